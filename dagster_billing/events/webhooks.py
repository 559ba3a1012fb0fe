"""Customer webhooks: organizations register HTTPS endpoints; every event of theirs is
POSTed to each, signed, retried with backoff, and every attempt is logged.

Signature (docs/events.md shows a receiver's check):
    DictaMesh-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + body)>
The timestamp is signed with the body, so a captured request cannot be replayed later
than the receiver's tolerance. The body is the event as a CloudEvents 1.0 JSON document.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlsplit

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dagster_billing.events.catalog import EVENT_TYPES, SOURCE, dataschema
from dagster_billing.events.outbox import take_events

log = logging.getLogger("dagster_billing.events.webhooks")

SIGNATURE_HEADER = "DictaMesh-Signature"


class WebhookError(ValueError):
    """A registration that cannot be accepted, phrased as `field: problem`."""


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def _check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname:
        host = parts.hostname
        loopback = host == "localhost" or (
            host.replace(".", "").isdigit() and ipaddress.ip_address(host).is_loopback
        )
        if loopback:  # local development and tests only
            return url
    raise WebhookError(f"url: must be an https:// URL, got {url!r}")


def register_endpoint(
    conn: Connection,
    organization: str,
    url: str,
    *,
    secret: str | None = None,
    event_types: list[str] | None = None,
) -> tuple[int, str]:
    """Add (or re-enable) an endpoint for an organization; returns its id and secret."""
    _check_url(url)
    for event_type in event_types or []:
        if event_type not in EVENT_TYPES:
            raise WebhookError(f"event_types: {event_type!r} is not a billing event type")
    secret = secret or f"whsec_{secrets.token_urlsafe(32)}"
    org_id = conn.scalar(
        sa.text("select id from dictamesh_billing_organizations where external_id = :o"),
        {"o": organization},
    )
    if org_id is None:
        raise WebhookError(f"organization: no organization {organization!r}")
    endpoint_id = conn.scalar(
        sa.text(
            "insert into dictamesh_billing_webhook_endpoints"
            " (organization_id, url, secret, event_types) values (:o, :u, :s, :t)"
            " on conflict (organization_id, url) do update set secret = excluded.secret,"
            " event_types = excluded.event_types, status = 'enabled', failing_since = null,"
            " disabled_at = null returning id"
        ),
        {"o": org_id, "u": url, "s": secret, "t": event_types},
    )
    return int(endpoint_id), secret


_FAN_OUT = sa.text(
    """
    insert into dictamesh_billing_webhook_deliveries (endpoint_id, event_id, next_attempt_at)
    select e.id, v.event_id, :now
    from jsonb_to_recordset(cast(:rows as jsonb)) as v(event_id uuid, event_type text,
                                                       organization text)
    join dictamesh_billing_organizations g on g.external_id = v.organization
    join dictamesh_billing_webhook_endpoints e on e.organization_id = g.id
    where e.status = 'enabled' and (e.event_types is null or v.event_type = any(e.event_types))
    on conflict (endpoint_id, event_id) do nothing
    """
)

_DUE = sa.text(
    """
    select d.id, d.attempts, d.event_id::text as event_id, e.id as endpoint_id, e.url, e.secret,
           e.failing_since, o.event_type, o.aggregate_type, o.aggregate_id, o.payload,
           to_char(o.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as time
    from dictamesh_billing_webhook_deliveries d
    join dictamesh_billing_webhook_endpoints e on e.id = d.endpoint_id
    join dictamesh_billing_outbox o on o.event_id = d.event_id
    where d.status = 'pending' and d.next_attempt_at <= :now and e.status = 'enabled'
    order by d.id
    limit 1
    for update of d skip locked
    """
)


def cloudevent_body(row: Any) -> bytes:
    """CloudEvents 1.0 structured mode: the attributes and `data` in one JSON document."""
    document = {
        "specversion": "1.0",
        "id": row.event_id,
        "source": SOURCE,
        "type": row.event_type,
        "time": row.time,
        "subject": f"{row.aggregate_type}/{row.aggregate_id}",
        "datacontenttype": "application/json",
        **({"dataschema": dataschema(row.event_type)} if row.event_type in EVENT_TYPES else {}),
        "data": row.payload,
    }
    return json.dumps(document, separators=(",", ":")).encode()


@dataclass
class WebhookResult:
    queued: int = 0
    delivered: int = 0
    retrying: int = 0
    failed: int = 0
    disabled_endpoints: int = 0


class WebhookDispatcher:
    """Fans events out to endpoints and delivers what is due."""

    def __init__(
        self,
        engine: Engine,
        *,
        disable_after: timedelta = timedelta(days=3),
        backoff: timedelta = timedelta(seconds=30),
        max_backoff: timedelta = timedelta(hours=6),
        timeout_seconds: float = 10.0,
    ) -> None:
        self.engine = engine
        self.disable_after = disable_after
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.timeout = timeout_seconds

    def fan_out(self, now: datetime, batch_size: int = 5_000) -> int:
        """One delivery per (enabled endpoint, event of its organization); marks the rows."""
        queued = 0
        while True:
            with self.engine.begin() as conn:
                rows = take_events(conn, "webhooks", batch_size)
                if not rows:
                    return queued
                payload = [
                    {
                        "event_id": r.event_id,
                        "event_type": r.event_type,
                        "organization": r.organization,
                    }
                    for r in rows
                ]
                queued += conn.execute(_FAN_OUT, {"rows": json.dumps(payload), "now": now}).rowcount

    def deliver_due(self, now: datetime, result: WebhookResult | None = None) -> WebhookResult:
        """Attempt every delivery due at `now` once."""
        result = result or WebhookResult()
        while True:
            with self.engine.begin() as conn:
                row = conn.execute(_DUE, {"now": now}).one_or_none()
                if row is None:
                    return result
                self._attempt(conn, row, now, result)

    def _attempt(self, conn: Connection, row: Any, now: datetime, result: WebhookResult) -> None:
        body = cloudevent_body(row)
        attempt = row.attempts + 1
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(row.secret, int(time.time()), body),
            "DictaMesh-Event-Id": row.event_id,
            "DictaMesh-Delivery-Attempt": str(attempt),
        }
        status: int | None = None
        error: str | None = None
        try:
            response = httpx.post(row.url, content=body, headers=headers, timeout=self.timeout)
            status = response.status_code
            if not response.is_success:
                error = f"HTTP {status}"
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_webhook_attempts"
                " (delivery_id, attempt, status_code, error, attempted_at)"
                " values (:d, :a, :s, :e, :t)"
            ),
            {"d": row.id, "a": attempt, "s": status, "e": error, "t": now},
        )
        if error is None:
            self._update(conn, row.id, attempt, "delivered", now, status, None, delivered=True)
            conn.execute(
                sa.text(
                    "update dictamesh_billing_webhook_endpoints set failing_since = null"
                    " where id = :e"
                ),
                {"e": row.endpoint_id},
            )
            result.delivered += 1
            return
        retryable = status is None or status >= 500 or status in (408, 429)
        failing_since = row.failing_since or now
        if row.failing_since is None:
            conn.execute(
                sa.text(
                    "update dictamesh_billing_webhook_endpoints set failing_since = :t"
                    " where id = :e and failing_since is null"
                ),
                {"t": now, "e": row.endpoint_id},
            )
        if now - failing_since >= self.disable_after:
            self._update(conn, row.id, attempt, "pending", now, status, error)
            self._disable(conn, row.endpoint_id, now, result)
        elif retryable:
            wait = min(self.backoff * 2 ** (attempt - 1), self.max_backoff)
            self._update(conn, row.id, attempt, "pending", now + wait, status, error)
            result.retrying += 1
        else:
            self._update(conn, row.id, attempt, "failed", now, status, error)
            result.failed += 1

    def _disable(
        self, conn: Connection, endpoint_id: int, now: datetime, result: WebhookResult
    ) -> None:
        """After `disable_after` of failures the endpoint stops; its queue fails with it."""
        conn.execute(
            sa.text(
                "update dictamesh_billing_webhook_endpoints set status = 'disabled',"
                " disabled_at = :t where id = :e"
            ),
            {"t": now, "e": endpoint_id},
        )
        result.failed += conn.execute(
            sa.text(
                "update dictamesh_billing_webhook_deliveries set status = 'failed',"
                " last_error = coalesce(last_error || '; ', '') || 'endpoint disabled'"
                " where endpoint_id = :e and status = 'pending'"
            ),
            {"e": endpoint_id},
        ).rowcount
        result.disabled_endpoints += 1
        log.warning("webhook endpoint %s disabled after failing since before %s", endpoint_id, now)

    @staticmethod
    def _update(
        conn: Connection,
        delivery_id: int,
        attempts: int,
        status: str,
        next_at: datetime,
        status_code: int | None,
        error: str | None,
        *,
        delivered: bool = False,
    ) -> None:
        conn.execute(
            sa.text(
                "update dictamesh_billing_webhook_deliveries set status = :status,"
                " attempts = :attempts, next_attempt_at = :next, last_status_code = :code,"
                " last_error = :error, delivered_at = case when :delivered then :next end"
                " where id = :id"
            ),
            {
                "status": status,
                "attempts": attempts,
                "next": next_at,
                "code": status_code,
                "error": error,
                "delivered": delivered,
                "id": delivery_id,
            },
        )

    def run(self, now: datetime) -> WebhookResult:
        result = WebhookResult(queued=self.fan_out(now))
        return self.deliver_due(now, result)
