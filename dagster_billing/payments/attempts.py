"""Payment attempts: how a Stripe PaymentIntent's state becomes ours.

Every change to an attempt goes through `apply_intent` (or `record_failure` for a
decline without an intent), in one transaction with the invoice, the ledger, the outbox
and dunning. It is idempotent and order-proof: a succeeded attempt never goes back, and
the callers pass the PaymentIntent as just read from Stripe, so a late or duplicated
webhook changes nothing that is not true now.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, RowMapping

from dagster_billing.events import catalog as events
from dagster_billing.events.outbox import write_events
from dagster_billing.invoicing.lifecycle import mark_paid
from dagster_billing.payments import PaymentError
from dagster_billing.payments.dunning import after_failure
from dagster_billing.payments.gateway import Intent
from dagster_billing.warehouse.schema import currencies, invoices, payment_ledger, payments

IN_FLIGHT = ("pending", "unknown", "processing", "requires_action")
FINAL = ("succeeded", "failed", "canceled", "refunded")

# Stripe's PaymentIntent status -> ours.
_STATUS = {
    "succeeded": "succeeded",
    "processing": "processing",
    "requires_capture": "processing",
    "requires_action": "requires_action",
    "requires_confirmation": "requires_action",
    "requires_payment_method": "failed",
    "canceled": "canceled",
}


def row_stamp(created_at: datetime) -> str:
    """A row's creation instant in microseconds: with its id it tells apart warehouses
    (staging, production) that share one Stripe account, where ids alone would collide
    and Stripe would replay another warehouse's answer to the same key."""
    return str(int(created_at.timestamp() * 1_000_000))


def idempotency_key(invoice_id: int, invoice_created_at: datetime, attempt: int) -> str:
    """Derived from the stored rows, so a retry of the same attempt reuses it."""
    return f"dmb-invoice-{invoice_id}-{row_stamp(invoice_created_at)}-attempt-{attempt}"


def minor_units(conn: Connection, currency: str) -> int:
    units = conn.scalar(sa.select(currencies.c.minor_units).where(currencies.c.code == currency))
    if units is None:
        raise PaymentError(f"currency: unknown currency {currency!r}")
    return int(units)


def to_minor(amount: Decimal, units: int) -> int:
    """Stripe amounts are integers in the minor unit (cents; JPY has none)."""
    scaled = amount.scaleb(units)
    if scaled != scaled.to_integral_value():
        raise PaymentError(f"amount: {amount} has more decimals than the currency's {units}")
    return int(scaled)


def from_minor(amount: int, units: int) -> Decimal:
    return Decimal(amount).scaleb(-units)


@dataclass(frozen=True)
class PaymentView:
    """A payment as the API returns it."""

    id: int
    invoice_id: int
    invoice_number: str
    attempt: int
    provider: str
    status: str
    amount: Decimal
    amount_refunded: Decimal
    currency: str
    stripe_payment_intent_id: str | None
    failure_code: str | None
    decline_code: str | None
    failure_message: str | None
    reference: str | None
    next_retry_at: datetime | None
    created_at: datetime
    succeeded_at: datetime | None


def _view(row: RowMapping) -> PaymentView:
    values = {f.name: row[f.name] for f in fields(PaymentView)}
    return PaymentView(**{**values, "currency": values["currency"].strip()})


def _payments_with_number() -> sa.Select[Any]:
    return sa.select(payments, invoices.c.number.label("invoice_number")).join(
        invoices, invoices.c.id == payments.c.invoice_id
    )


def get_payment(conn: Connection, payment_id: int) -> PaymentView:
    """One payment by id (for `GET /payments/:id`); PaymentError if there is none."""
    row = (
        conn.execute(_payments_with_number().where(payments.c.id == payment_id))
        .mappings()
        .one_or_none()
    )
    if row is None:
        raise PaymentError(f"payment_id: no payment {payment_id}")
    return _view(row)


def list_payments(conn: Connection, invoice_number: str) -> list[PaymentView]:
    """Every attempt and manual payment of an invoice, oldest first."""
    rows = conn.execute(
        _payments_with_number()
        .where(invoices.c.number == invoice_number)
        .order_by(payments.c.attempt)
    ).mappings()
    return [_view(row) for row in rows]


# An attempt with the invoice facts its events and dunning need, read in the statement
# that locks or updates it (one round trip instead of a lock and a second read).
_WITH_INVOICE = (
    invoices.c.number.label("invoice_number"),
    invoices.c.organization_id,
    invoices.c.status.label("invoice_status"),
)


def _invoice_of(attempt: RowMapping) -> dict[str, Any]:
    return {
        "id": attempt["invoice_id"],
        "number": attempt["invoice_number"],
        "organization_id": attempt["organization_id"],
        "status": attempt["invoice_status"],
    }


def _charge(attempt: RowMapping) -> events.Charge:
    return events.Charge(
        payment_id=str(attempt["id"]),
        invoice_id=attempt["invoice_id"],
        invoice_number=attempt["invoice_number"],
        organization_id=attempt["organization_id"],
        amount=attempt["amount"],
        currency=attempt["currency"].strip(),
        attempt=attempt["attempt"],
        provider=attempt["provider"],
    )


# Statements built once (a charge run executes them thousands of times; building one
# costs more than a round trip's worth of CPU). The columns to set come from the parameters.
_UNCHANGED = sa.or_(
    payments.c.status.in_(["succeeded", "refunded"]),
    sa.and_(
        payments.c.status == sa.bindparam("new_status"),
        payments.c.stripe_payment_intent_id.is_not(None),
    ),
)


def _update_where(guard: Any) -> sa.Update:
    """Update the attempt if `guard` still holds (checked on the row as locked), returning
    it with its invoice's facts; no row when `guard` did not hold."""
    return (
        sa.update(payments)
        .where(
            payments.c.id == sa.bindparam("payment_id"),
            invoices.c.id == payments.c.invoice_id,
            guard,
        )
        .values(updated_at=sa.func.now())
        .returning(*payments.c, *_WITH_INVOICE)
    )


_UPDATE_UNLESS_UNCHANGED = _update_where(sa.not_(_UNCHANGED))
_UPDATE_UNLESS_FINAL = _update_where(payments.c.status.not_in(FINAL))
_LEDGER_PAYMENT = insert(payment_ledger).on_conflict_do_nothing()


def record_success(conn: Connection, payment_id: int, at: datetime) -> None:
    """The money arrived: ledger row, invoice paid (with `billing.invoice.paid`), event.
    A second success for an invoice already paid is recorded as it is (the asset check
    `no_invoice_paid_twice` shows it; finance refunds it)."""
    attempt = (
        conn.execute(
            sa.select(payments, *_WITH_INVOICE)
            .join(invoices, invoices.c.id == payments.c.invoice_id)
            .where(payments.c.id == payment_id)
            .with_for_update(of=payments)
        )
        .mappings()
        .one()
    )
    _succeeded(conn, attempt, at)


def _succeeded(conn: Connection, attempt: RowMapping, at: datetime) -> None:
    conn.execute(
        _LEDGER_PAYMENT,
        {
            "organization_id": attempt["organization_id"],
            "invoice_id": attempt["invoice_id"],
            "payment_id": attempt["id"],
            "entry_type": "payment",
            "amount": attempt["amount"],
            "currency": attempt["currency"],
            "occurred_at": at,
        },
    )
    if attempt["invoice_status"] in ("open", "uncollectible"):
        mark_paid(conn, attempt["invoice_number"], at=at)
    write_events(conn, [events.payment_succeeded(_charge(attempt), succeeded_at=at)])


def apply_intent(
    conn: Connection, payment_id: int, intent: Intent, *, now: datetime, retry_days: Sequence[int]
) -> str:
    """Bring one attempt to the PaymentIntent's state (read from Stripe just now)."""
    new_status = _STATUS.get(intent.status, "processing")
    values: dict[str, Any] = {"status": new_status, "stripe_payment_intent_id": intent.id}
    if new_status == "failed":
        values.update(
            failure_code=intent.failure_code or "card_declined",
            decline_code=intent.decline_code,
            failure_message=intent.failure_message,
            next_reconcile_at=None,
        )
    elif new_status == "succeeded":
        values.update(succeeded_at=intent.created or now, next_reconcile_at=None, failure_code=None)
    elif new_status == "canceled":
        values.update(next_reconcile_at=None)
    elif new_status == "requires_action":
        values.update(failure_code=intent.failure_code or "authentication_required")
    # A succeeded attempt never goes back; one already in this state with its intent
    # recorded is left as it is (a redelivered webhook).
    attempt = (
        conn.execute(
            _UPDATE_UNLESS_UNCHANGED,
            {"payment_id": payment_id, "new_status": new_status, **values},
        )
        .mappings()
        .one_or_none()
    )
    if attempt is None:
        return conn.execute(
            sa.select(payments.c.status).where(payments.c.id == payment_id)
        ).scalar_one()
    if new_status == "succeeded":
        _succeeded(conn, attempt, now)
    elif new_status == "failed":
        _failed(conn, attempt, now, retry_days)
    return new_status


def record_failure(
    conn: Connection,
    payment_id: int,
    *,
    code: str | None,
    decline_code: str | None,
    message: str,
    intent_id: str | None,
    now: datetime,
    retry_days: Sequence[int],
    dunning: bool = True,
) -> None:
    """A decline that came back as an error (Stripe may or may not say which intent).
    Without `dunning` (a request Stripe rejected as malformed: our bug) nothing is
    scheduled and the invoice is not written off; the failure event is still written."""
    values: dict[str, Any] = {
        "status": "failed",
        "failure_code": code or "card_declined",
        "decline_code": decline_code,
        "failure_message": message[:500],
        "next_reconcile_at": None,
    }
    if intent_id:
        values["stripe_payment_intent_id"] = intent_id
    attempt = (
        conn.execute(_UPDATE_UNLESS_FINAL, {"payment_id": payment_id, **values})
        .mappings()
        .one_or_none()
    )
    if attempt is not None:
        _failed(conn, attempt, now, retry_days, dunning=dunning)


def _failed(
    conn: Connection,
    attempt: RowMapping,
    now: datetime,
    retry_days: Sequence[int],
    *,
    dunning: bool = True,
) -> None:
    next_retry = (
        after_failure(conn, attempt, _invoice_of(attempt), now=now, retry_days=retry_days)
        if dunning
        else None
    )
    failed = events.payment_failed(
        _charge(attempt),
        failed_at=now,
        failure_code=attempt["failure_code"] or "unknown",
        decline_code=attempt["decline_code"],
        next_attempt_at=next_retry,
    )
    write_events(conn, [failed])
