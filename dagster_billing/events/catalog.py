"""The event catalogue: every billing event type, its JSON Schema, and builders.

A builder returns an `Event` for `outbox.write_events`, called by the code that makes the
change in the same transaction. Payload versions live in the schema's `$id` (and the
CloudEvents `dataschema` attribute), not in the payload: a breaking change is a new schema
version, an added optional field is not. Schemas are files in `docs/events/`, so the
documentation and the tests read the same text.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

from dagster_billing.events.outbox import Event
from dagster_billing.settings import PROJECT_ROOT

SCHEMA_DIR = PROJECT_ROOT / "docs" / "events"
SCHEMA_BASE_URL = "https://schemas.dictamesh.dev/billing/events"
SOURCE = "/dictamesh/billing"

# type -> payload schema version. The seed's ten, plus (beyond the seed) the renewal
# reminder the daily renewal schedule writes, voided invoices, refunds and failed runs.
EVENT_TYPES: dict[str, int] = {
    "billing.subscription.created": 1,
    "billing.subscription.updated": 1,
    "billing.subscription.canceled": 1,
    "billing.subscription.renewal_upcoming": 1,
    "billing.invoice.created": 1,
    "billing.invoice.paid": 1,
    "billing.invoice.overdue": 1,
    "billing.invoice.voided": 1,
    "billing.payment.succeeded": 1,
    "billing.payment.failed": 1,
    "billing.payment.refunded": 1,
    "billing.usage.threshold_reached": 1,
    "billing.credit.applied": 1,
    "billing.dagster_run.failed": 1,
}


class UnknownEventTypeError(ValueError):
    """An event type outside the catalogue: it would be published without a schema."""


def schema_path(event_type: str) -> Path:
    if event_type not in EVENT_TYPES:
        raise UnknownEventTypeError(f"event_type: {event_type!r} is not in the catalogue")
    return SCHEMA_DIR / f"{event_type}.v{EVENT_TYPES[event_type]}.schema.json"


def dataschema(event_type: str) -> str:
    """The CloudEvents `dataschema` URI: the schema file's `$id`."""
    return f"{SCHEMA_BASE_URL}/{schema_path(event_type).name}"


@cache
def load_schema(event_type: str) -> dict[str, Any]:
    return json.loads(schema_path(event_type).read_text())


def _money(value: Decimal) -> str:
    """Amounts travel as decimal strings: a JSON number would become a float somewhere."""
    return str(value)


def _subscription(
    event_type: str,
    *,
    subscription_id: str,
    organization_id: str,
    occurred_at: datetime,
    change_key: str,
    fields: Mapping[str, Any],
) -> Event:
    payload = {
        "subscription_id": subscription_id,
        "organization_id": organization_id,
        **{k: v for k, v in fields.items() if v is not None},
    }
    return Event(
        event_type,
        "subscription",
        subscription_id,
        f"{event_type}:{subscription_id}:{change_key}",
        payload,
        occurred_at,
    )


def subscription_created(
    *,
    subscription_id: str,
    organization_id: str,
    plan_id: str,
    billing_cycle: str,
    seats: int,
    started_at: datetime,
    current_period_end: datetime | None = None,
) -> Event:
    """A new subscription (ids are external ids); once per subscription."""
    return _subscription(
        "billing.subscription.created",
        subscription_id=subscription_id,
        organization_id=organization_id,
        occurred_at=started_at,
        change_key="created",
        fields={
            "plan_id": plan_id,
            "billing_cycle": billing_cycle,
            "seats": seats,
            "started_at": started_at.isoformat(),
            "current_period_end": current_period_end.isoformat() if current_period_end else None,
        },
    )


def subscription_updated(
    *,
    subscription_id: str,
    organization_id: str,
    effective_at: datetime,
    change_id: str,
    changes: Mapping[str, Mapping[str, Any]],
) -> Event:
    """A plan, seat or cycle change; `changes` maps each field to {"from": .., "to": ..};
    `change_id` (e.g. the subscription_changes row id) makes each change one event."""
    for field_name, change in changes.items():
        if set(change) != {"from", "to"}:
            raise ValueError(f"changes.{field_name}: needs exactly 'from' and 'to'")
    return _subscription(
        "billing.subscription.updated",
        subscription_id=subscription_id,
        organization_id=organization_id,
        occurred_at=effective_at,
        change_key=change_id,
        fields={
            "effective_at": effective_at.isoformat(),
            "changes": {k: dict(v) for k, v in changes.items()},
        },
    )


def subscription_canceled(
    *,
    subscription_id: str,
    organization_id: str,
    canceled_at: datetime,
    ends_at: datetime,
    reason: str | None = None,
) -> Event:
    """A cancellation (immediate when ends_at == canceled_at); once per subscription."""
    return _subscription(
        "billing.subscription.canceled",
        subscription_id=subscription_id,
        organization_id=organization_id,
        occurred_at=canceled_at,
        change_key="canceled",
        fields={
            "canceled_at": canceled_at.isoformat(),
            "ends_at": ends_at.isoformat(),
            "reason": reason,
        },
    )


def subscription_renewal_upcoming(
    *,
    subscription_id: str,
    organization_id: str,
    plan_id: str,
    renews_at: datetime,
    amount: Decimal | None,
    currency: str,
    as_of: datetime,
) -> Event:
    """An annual renewal N days ahead (the daily renewal schedule); once per renewal."""
    return _subscription(
        "billing.subscription.renewal_upcoming",
        subscription_id=subscription_id,
        organization_id=organization_id,
        occurred_at=as_of,
        change_key=renews_at.isoformat(),
        fields={
            "plan_id": plan_id,
            "renews_at": renews_at.isoformat(),
            "amount": _money(amount) if amount is not None else None,
            "currency": currency,
        },
    )


def invoice_created(document: Mapping[str, Any], issued_at: datetime) -> Event:
    """A finalized invoice: `document` is its payload (numbers, amounts as strings)."""
    invoice_id = document["invoice_id"]
    return Event(
        "billing.invoice.created",
        "invoice",
        str(invoice_id),
        f"billing.invoice.created:{invoice_id}",
        dict(document),
        issued_at,
    )


def invoice_paid(
    *,
    invoice_id: int,
    number: str,
    organization_id: int,
    currency: str,
    total: Decimal,
    paid_at: datetime,
) -> Event:
    """An invoice settled in full: by a payment, or at finalization when nothing was due."""
    return Event(
        "billing.invoice.paid",
        "invoice",
        str(invoice_id),
        f"billing.invoice.paid:{invoice_id}",
        {
            "invoice_id": invoice_id,
            "number": number,
            "organization_id": organization_id,
            "currency": currency,
            "total": _money(total),
            "paid_at": paid_at.isoformat(),
        },
        paid_at,
    )


def invoice_overdue(
    *,
    invoice_id: int,
    number: str,
    organization_id: int,
    due_at: datetime,
    amount_due: Decimal,
    currency: str,
    as_of: datetime,
) -> Event:
    """An open invoice past its due date; once per invoice."""
    return Event(
        "billing.invoice.overdue",
        "invoice",
        str(invoice_id),
        f"billing.invoice.overdue:{invoice_id}",
        {
            "invoice_id": invoice_id,
            "number": number,
            "organization_id": organization_id,
            "due_at": due_at.isoformat(),
            "amount_due": _money(amount_due),
            "currency": currency,
        },
        as_of,
    )


def credit_applied(
    *,
    credit_id: int,
    ledger_entry_id: int,
    invoice_id: int,
    invoice_number: str,
    organization_id: int | str,
    amount: Decimal,
    currency: str,
    applied_at: datetime,
) -> Event:
    """Credit drawn against an invoice (amount positive); once per credit and invoice."""
    return Event(
        "billing.credit.applied",
        "credit",
        str(credit_id),
        f"billing.credit.applied:{credit_id}:{invoice_id}",
        {
            "credit_id": credit_id,
            "ledger_entry_id": ledger_entry_id,
            "invoice_id": invoice_id,
            "invoice_number": invoice_number,
            "organization_id": organization_id,
            "amount": _money(amount),
            "currency": currency,
        },
        applied_at,
    )


def invoice_voided(
    *,
    invoice_id: int,
    number: str,
    organization_id: int,
    previous_status: str,
    reason: str,
    voided_at: datetime,
    amount_due: Decimal,
    currency: str,
    credits_returned: Decimal,
) -> Event:
    """An issued invoice cancelled (its applied credits returned); once per invoice."""
    return Event(
        "billing.invoice.voided",
        "invoice",
        str(invoice_id),
        f"billing.invoice.voided:{invoice_id}",
        {
            "invoice_id": invoice_id,
            "number": number,
            "organization_id": organization_id,
            "previous_status": previous_status,
            "reason": reason,
            "voided_at": voided_at.isoformat(),
            "amount_due": _money(amount_due),
            "currency": currency,
            "credits_returned": _money(credits_returned),
        },
        voided_at,
    )


@dataclass(frozen=True)
class Charge:
    """The facts every payment event carries: one attempt to collect an invoice.
    `payment_id` is our attempt id or the provider's (a PaymentIntent id)."""

    payment_id: str
    invoice_id: int
    invoice_number: str
    organization_id: int | str
    amount: Decimal
    currency: str
    attempt: int
    provider: str = "stripe"


def _payment(event_type: str, charge: Charge, at: datetime, extra: Mapping[str, Any]) -> Event:
    return Event(
        event_type,
        "payment",
        charge.payment_id,
        f"{event_type}:{charge.payment_id}",
        {
            "payment_id": charge.payment_id,
            "invoice_id": charge.invoice_id,
            "invoice_number": charge.invoice_number,
            "organization_id": charge.organization_id,
            "amount": _money(charge.amount),
            "currency": charge.currency,
            "attempt": charge.attempt,
            "provider": charge.provider,
            **{k: v for k, v in extra.items() if v is not None},
        },
        at,
    )


def payment_succeeded(charge: Charge, *, succeeded_at: datetime) -> Event:
    """A charge that settled an invoice; once per payment id."""
    return _payment(
        "billing.payment.succeeded",
        charge,
        succeeded_at,
        {"succeeded_at": succeeded_at.isoformat()},
    )


def payment_failed(
    charge: Charge,
    *,
    failed_at: datetime,
    failure_code: str,
    failure_message: str | None = None,
    decline_code: str | None = None,
    next_attempt_at: datetime | None = None,
) -> Event:
    """A declined or failed charge (`decline_code` is the issuer's reason when the card
    was declined); `next_attempt_at` when dunning will retry."""
    return _payment(
        "billing.payment.failed",
        charge,
        failed_at,
        {
            "failed_at": failed_at.isoformat(),
            "failure_code": failure_code,
            "failure_message": failure_message,
            "decline_code": decline_code,
            "next_attempt_at": next_attempt_at.isoformat() if next_attempt_at else None,
        },
    )


def payment_refunded(
    *,
    payment_id: int,
    credit_note: str,
    invoice_id: int,
    invoice_number: str,
    organization_id: int,
    amount: Decimal,
    currency: str,
    reason: str | None,
    refunded_at: datetime,
) -> Event:
    """Money returned against a payment, as a credit note; once per credit note."""
    return Event(
        "billing.payment.refunded",
        "payment",
        str(payment_id),
        f"billing.payment.refunded:{credit_note}",
        {
            "credit_note": credit_note,
            "invoice_id": invoice_id,
            "invoice_number": invoice_number,
            "payment_id": payment_id,
            "organization_id": organization_id,
            "amount": _money(amount),
            "currency": currency,
            "reason": reason,
            "refunded_at": refunded_at.isoformat(),
        },
        refunded_at,
    )


def dagster_run_failed(
    *,
    run_id: str,
    job_name: str,
    partition_key: str | None,
    error: str | None,
    failed_at: datetime,
) -> Event:
    """A Dagster run of this code location failed (the run-failure sensor); once per run.
    No organization: its Kafka key is the run id."""
    return Event(
        "billing.dagster_run.failed",
        "dagster_run",
        run_id,
        f"billing.dagster_run.failed:{run_id}",
        {
            "run_id": run_id,
            "job_name": job_name,
            "partition_key": partition_key,
            "error": error,
            "failed_at": failed_at.isoformat(),
        },
        failed_at,
    )


def usage_threshold_reached(
    *,
    organization_db_id: int,
    organization_id: str,
    metric: str,
    threshold: int,
    plan_id: str,
    quota: Decimal,
    usage: Decimal,
    period_start: datetime,
    period_end: datetime,
    crossed_at: datetime,
) -> Event:
    """80% / 100% of a quota in a period; once per organization, metric, period, threshold."""
    start = period_start.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return Event(
        "billing.usage.threshold_reached",
        "organization",
        organization_id,
        f"usage-threshold:{organization_db_id}:{metric}:{start}:{threshold}",
        {
            "organization_id": organization_id,
            "metric": metric,
            "threshold": threshold,
            "plan_id": plan_id,
            "quota": _money(quota),
            "usage": _money(usage),
            "period_start": period_start.isoformat(),
            "period_end": period_end.isoformat(),
        },
        crossed_at,
    )
