"""Deliveries: which (event, channel, recipient) get a message, and sending each once.

Planning takes outbox rows nobody has notified about yet (`notified_at is null`), writes
one delivery row per (event, channel, recipient), unique in the database, and marks the
rows, in one transaction: an event relayed twice, or planned by two runs, still gets
one delivery. Sending locks one pending delivery, tries up to `retry_attempts` times
with exponential backoff, logs every attempt, and ends `sent` or `failed` with the reason.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dagster_billing.events.outbox import ORGANIZATION_OF_EVENT, take_events
from dagster_billing.invoicing.document import Seller
from dagster_billing.invoicing.pdf import DEFAULT_TEMPLATE_DIR
from dagster_billing.notifications.channels import Channel, DeliveryError
from dagster_billing.notifications.render import EventRow, NotificationError, Rendered, render_many
from dagster_billing.notifications.specs import BY_EVENT_TYPE

log = logging.getLogger("dagster_billing.notifications")

_RECIPIENTS = sa.text(
    """
    select g.external_id, g.id as organization_id, g.email,
           r.channel, r.address, coalesce(r.opted_out, '{}') as opted_out
    from dictamesh_billing_organizations g
    left join dictamesh_billing_notification_recipients r on r.organization_id = g.id
    where g.external_id = any(:orgs)
    """
)

_PENDING_DELIVERIES = sa.text(
    f"""
    select d.id, d.channel, d.event_id::text as event_id, o.event_type, o.payload, o.occurred_at,
           {ORGANIZATION_OF_EVENT} as organization
    from dictamesh_billing_notification_deliveries d
    join dictamesh_billing_outbox o on o.event_id = d.event_id
    where d.status = 'pending' and d.id > :after and d.channel = any(:channels)
    order by d.id
    limit :limit
    """
)

_CLAIM = sa.text(
    "select * from dictamesh_billing_notification_deliveries"
    " where id = :id and status = 'pending' for update skip locked"
)

_INSERT_DELIVERIES = sa.text(
    """
    insert into dictamesh_billing_notification_deliveries
        (event_id, template, channel, recipient, organization_id)
    select event_id, template, channel, recipient, organization_id
    from jsonb_to_recordset(cast(:rows as jsonb)) as d(
        event_id uuid, template text, channel text, recipient text, organization_id bigint)
    on conflict (event_id, channel, recipient) do nothing
    """
)


@dataclass
class Recipients:
    organization_id: int
    email: str | None
    explicit: dict[str, list[tuple[str, list[str]]]]  # channel -> [(address, opted_out)]


def _recipients(conn: Connection, orgs: set[str]) -> dict[str, Recipients]:
    found: dict[str, Recipients] = {}
    for row in conn.execute(_RECIPIENTS, {"orgs": sorted(orgs)}):
        entry = found.setdefault(
            row.external_id, Recipients(row.organization_id, row.email, defaultdict(list))
        )
        if row.channel is not None:
            entry.explicit[row.channel].append((row.address, list(row.opted_out)))
    return found


def recipients_for(entry: Recipients, channel: str, template: str, mandatory: bool) -> list[str]:
    """Explicit recipients of the channel, minus those who opted out of this template
    (never for mandatory ones); without explicit ones, the organization itself."""
    explicit = entry.explicit.get(channel)
    if explicit:
        return [a for a, opted_out in explicit if mandatory or template not in opted_out]
    if channel == "email":
        return [entry.email] if entry.email else []
    return []


@dataclass
class NotifyResult:
    planned: int = 0
    sent: int = 0
    failed: int = 0


class Notifier:
    """Plans and sends notifications over the given channels (by channel name)."""

    def __init__(
        self,
        engine: Engine,
        channels: Mapping[str, Channel],
        seller: Seller,
        *,
        retry_attempts: int = 3,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 30.0,
        service_recipient: Callable[[str], str] | None = None,
        attach_pdf: bool = True,
        invoice_template_dir: Path = DEFAULT_TEMPLATE_DIR,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.engine = engine
        self.channels = dict(channels)
        self.seller = seller
        self.attempts = max(1, retry_attempts)
        self.backoff = backoff_seconds
        self.max_backoff = max_backoff_seconds
        self.service_recipient = service_recipient or (lambda org: org)
        self.attach_pdf = attach_pdf
        self.invoice_template_dir = invoice_template_dir
        self.sleep = sleep

    # -- planning ------------------------------------------------------------------------

    def plan(self, batch_size: int = 5_000) -> int:
        """Turn not-yet-notified outbox rows into deliveries; returns deliveries created."""
        created = 0
        while True:
            with self.engine.begin() as conn:
                rows = take_events(conn, "notifications", batch_size)
                if not rows:
                    return created
                created += self._plan_rows(conn, rows)

    def _plan_rows(self, conn: Connection, rows: list[Any]) -> int:
        wanted = [r for r in rows if r.event_type in BY_EVENT_TYPE]
        if not wanted:
            return 0
        recipients = _recipients(conn, {r.organization for r in wanted})
        deliveries = []
        for row in wanted:
            spec = BY_EVENT_TYPE[row.event_type]
            entry = recipients.get(row.organization)
            if entry is None:
                log.warning(
                    "event %s: no organization %r to notify", row.event_id, row.organization
                )
                continue
            for channel in self.channels:
                addresses = recipients_for(entry, channel, spec.name, spec.mandatory)
                if channel == "service" and not entry.explicit.get("service"):
                    addresses = [self.service_recipient(row.organization)]
                deliveries.extend(
                    {
                        "event_id": row.event_id,
                        "template": spec.name,
                        "channel": channel,
                        "recipient": address,
                        "organization_id": entry.organization_id,
                    }
                    for address in addresses
                )
        if not deliveries:
            return 0
        return conn.execute(_INSERT_DELIVERIES, {"rows": json.dumps(deliveries)}).rowcount

    # -- sending -------------------------------------------------------------------------

    def send_pending(self, limit: int | None = None, batch_size: int = 200) -> tuple[int, int]:
        """Send pending deliveries; returns (sent, failed).

        A batch is rendered together (the rows it shares read once), then each delivery
        is locked, sent and recorded in its own transaction, so a crash repeats at most
        the one message in flight, and a delivery another sender holds is skipped.
        """
        sent = failed = 0
        after = 0
        while limit is None or sent + failed < limit:
            size = batch_size if limit is None else min(batch_size, limit - sent - failed)
            with self.engine.connect() as conn:
                batch = conn.execute(
                    _PENDING_DELIVERIES,
                    {"after": after, "limit": size, "channels": list(self.channels)},
                ).all()
                if not batch:
                    break
                events = [
                    EventRow(d.event_id, d.event_type, d.organization, d.payload, d.occurred_at)
                    for d in batch
                ]
                messages = render_many(
                    conn,
                    events,
                    self.seller,
                    attach_pdf=[self.attach_pdf and d.channel == "email" for d in batch],
                    invoice_template_dir=self.invoice_template_dir,
                )
            for candidate, message in zip(batch, messages, strict=True):
                after = candidate.id
                with self.engine.begin() as conn:
                    delivery = conn.execute(_CLAIM, {"id": candidate.id}).one_or_none()
                    if delivery is None:
                        continue  # sent meanwhile, or another sender holds it
                    if self._deliver(conn, delivery, message):
                        sent += 1
                    else:
                        failed += 1
        return sent, failed

    def _deliver(
        self, conn: Connection, delivery: Any, message: Rendered | NotificationError
    ) -> bool:
        if isinstance(message, NotificationError):
            return self._finish(conn, delivery, delivery.attempts + 1, False, f"render: {message}")
        key = f"{delivery.event_id}:{delivery.channel}:{delivery.recipient}"
        channel = self.channels[delivery.channel]
        attempt = delivery.attempts
        wait = self.backoff
        error = ""
        for n in range(self.attempts):
            attempt += 1
            try:
                detail = channel.send(message, delivery.recipient, key)
            except DeliveryError as exc:
                error = exc.reason
                self._log_attempt(conn, delivery.id, attempt, False, error)
                if not exc.retryable:
                    break
                if n + 1 < self.attempts:
                    self.sleep(wait)
                    wait = min(wait * 2, self.max_backoff)
                continue
            self._log_attempt(conn, delivery.id, attempt, True, detail)
            return self._finish(conn, delivery, attempt, True, None)
        log.warning(
            "notification %s to %s failed: %s", delivery.template, delivery.recipient, error
        )
        return self._finish(conn, delivery, attempt, False, error)

    def _log_attempt(
        self, conn: Connection, delivery_id: int, attempt: int, ok: bool, detail: str
    ) -> None:
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_notification_attempts"
                " (delivery_id, attempt, ok, detail) values (:d, :a, :ok, :detail)"
            ),
            {"d": delivery_id, "a": attempt, "ok": ok, "detail": detail[:1000]},
        )

    def _finish(
        self, conn: Connection, delivery: Any, attempts: int, ok: bool, error: str | None
    ) -> bool:
        conn.execute(
            sa.text(
                "update dictamesh_billing_notification_deliveries set status = :status,"
                " attempts = :attempts, last_error = :error,"
                " sent_at = case when :ok then now() end where id = :id"
            ),
            {
                "status": "sent" if ok else "failed",
                "attempts": attempts,
                "error": error[:1000] if error else None,
                "ok": ok,
                "id": delivery.id,
            },
        )
        return ok

    def run(self) -> NotifyResult:
        planned = self.plan()
        sent, failed = self.send_pending()
        return NotifyResult(planned, sent, failed)


def retry_failed(conn: Connection) -> int:
    """Put failed deliveries back in the queue (after an SMTP outage): nothing is lost."""
    return conn.execute(
        sa.text(
            "update dictamesh_billing_notification_deliveries set status = 'pending'"
            " where status = 'failed'"
        )
    ).rowcount
