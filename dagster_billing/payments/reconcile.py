"""Reconciliation: our attempts converge to what Stripe has.

An attempt is looked at while it is in flight: `pending` older than `STALE_PENDING` (the
charging process died between the Stripe call and recording), `unknown` (timeout),
`processing` and `requires_action`, each with a backoff (5 min, 1 h, then daily). Its
PaymentIntent is retrieved by the stored id, or, when the id was never recorded, found by
listing PaymentIntents created since the attempt and matching our metadata. Found: the
attempt takes its state. Not found: Stripe never got the request, the attempt is
`canceled` (`not_sent`) and the next charge run makes a new attempt. Never a blind POST.

A charge waiting for the customer to authenticate (`requires_action`) waits at most
`ACTION_DEADLINE` after the attempt: then its PaymentIntent is canceled and the attempt
fails with `authentication_required`, so dunning retries it and the customer is told
(billing.payment.failed), instead of the invoice staying in flight for ever.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.payments.attempts import IN_FLIGHT, apply_intent, record_failure
from dagster_billing.payments.gateway import (
    GatewayRejectedError,
    GatewayUnknownError,
    Intent,
    PaymentGateway,
)
from dagster_billing.warehouse.schema import invoices, organizations, payments

BACKOFF = (timedelta(minutes=5), timedelta(hours=1), timedelta(days=1))
# Longer than the Stripe timeout times its retries: a pending row this old has no
# charging process waiting on it any more.
STALE_PENDING = timedelta(minutes=2)
# How long a customer has to authenticate a charge (3-D Secure) before it is abandoned.
ACTION_DEADLINE = timedelta(hours=72)
WAITING = ("requires_action", "requires_confirmation")  # Stripe's, waiting on the customer


def backoff(attempts: int) -> timedelta:
    return BACKOFF[min(attempts, len(BACKOFF) - 1)]


def due_for_reconciliation(conn: sa.Connection, now: datetime, limit: int = 200) -> list[int]:
    return list(
        conn.scalars(
            sa.select(payments.c.id)
            .where(
                payments.c.provider == "stripe",
                sa.or_(
                    sa.and_(
                        payments.c.status == "pending",
                        payments.c.updated_at <= now - STALE_PENDING,
                        sa.or_(
                            payments.c.next_reconcile_at.is_(None),
                            payments.c.next_reconcile_at <= now,
                        ),
                    ),
                    sa.and_(
                        payments.c.status.in_(["unknown", "processing", "requires_action"]),
                        sa.or_(
                            payments.c.next_reconcile_at.is_(None),
                            payments.c.next_reconcile_at <= now,
                        ),
                    ),
                ),
            )
            .order_by(payments.c.next_reconcile_at.asc().nulls_first(), payments.c.id)
            .limit(limit)
        )
    )


def _find(gateway: PaymentGateway, row: sa.Row) -> Intent | None:
    if row.stripe_payment_intent_id:
        return gateway.retrieve_payment_intent(row.stripe_payment_intent_id)
    found = gateway.find_payment_intents(
        metadata_key="dmb_idempotency_key",
        metadata_value=row.idempotency_key,
        customer=row.stripe_customer_id,
        since=row.created_at,
    )
    # Two intents for one key would be a duplicate charge: take the succeeded one, and the
    # asset check and the log show the other.
    found.sort(key=lambda intent: intent.status != "succeeded")
    return found[0] if found else None


def reconcile_payment(
    engine: Engine,
    gateway: PaymentGateway,
    payment_id: int,
    *,
    now: datetime,
    retry_days: Sequence[int],
) -> str:
    """Resolve one in-flight attempt from Stripe; returns its status afterwards."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(payments, organizations.c.stripe_customer_id)
            .join(invoices, invoices.c.id == payments.c.invoice_id)
            .join(organizations, organizations.c.id == invoices.c.organization_id)
            .where(payments.c.id == payment_id)
        ).one()
    if row.status not in IN_FLIGHT:
        return row.status
    try:
        intent = _find(gateway, row)
    except (GatewayUnknownError, GatewayRejectedError):
        intent, unreachable = None, True
    else:
        unreachable = False
    if intent is not None and intent.status in WAITING and now - row.created_at >= ACTION_DEADLINE:
        intent = _cancel(gateway, intent)
        if intent.status == "canceled":
            return _abandoned(engine, payment_id, intent.id, now=now, retry_days=retry_days)
    with engine.begin() as conn:
        if intent is not None:
            status = apply_intent(conn, payment_id, intent, now=now, retry_days=retry_days)
        elif not unreachable and row.status in ("pending", "unknown"):
            conn.execute(
                sa.update(payments)
                .where(payments.c.id == payment_id, payments.c.status.in_(["pending", "unknown"]))
                .values(
                    status="canceled",
                    failure_code="not_sent",
                    next_reconcile_at=None,
                    updated_at=sa.func.now(),
                )
            )
            status = "canceled"
        else:
            status = row.status
        if status in IN_FLIGHT:
            conn.execute(
                sa.update(payments)
                .where(payments.c.id == payment_id)
                .values(
                    reconcile_attempts=payments.c.reconcile_attempts + 1,
                    next_reconcile_at=now + backoff(row.reconcile_attempts),
                )
            )
    return status


def _cancel(gateway: PaymentGateway, intent: Intent) -> Intent:
    """The intent canceled; as Stripe has it when the cancel is refused (authenticated or
    canceled meanwhile); unchanged when Stripe cannot be reached (tried again later)."""
    try:
        return gateway.cancel_payment_intent(intent.id)
    except GatewayRejectedError:
        with contextlib.suppress(GatewayUnknownError, GatewayRejectedError):
            return gateway.retrieve_payment_intent(intent.id)
    except GatewayUnknownError:
        pass
    return intent


def _abandoned(
    engine: Engine, payment_id: int, intent_id: str, *, now: datetime, retry_days: Sequence[int]
) -> str:
    """Fail an attempt whose intent nobody authenticated in time (dunning takes over)."""
    hours = int(ACTION_DEADLINE.total_seconds() // 3600)
    with engine.begin() as conn:
        record_failure(
            conn,
            payment_id,
            code="authentication_required",
            decline_code=None,
            message=f"the customer did not authenticate the payment within {hours} h",
            intent_id=intent_id,
            now=now,
            retry_days=retry_days,
        )
    return "failed"


def resolve_intent(
    engine: Engine,
    gateway: PaymentGateway,
    intent_id: str,
    *,
    now: datetime,
    retry_days: Sequence[int],
) -> str | None:
    """A webhook named this PaymentIntent: re-read it and apply it to its attempt (found by
    the stored id, else by our metadata's idempotency key). An intent that carries our
    metadata but has no attempt row (lost) is recorded as a new attempt, never charged."""
    intent = gateway.retrieve_payment_intent(intent_id)
    key = intent.metadata.get("dmb_idempotency_key")
    with engine.begin() as conn:
        payment_id = conn.scalar(
            sa.select(payments.c.id)
            .where(
                sa.or_(
                    payments.c.stripe_payment_intent_id == intent.id,
                    payments.c.idempotency_key == (key or ""),
                )
            )
            .order_by(payments.c.id)
            .limit(1)
        )
        if payment_id is None:
            invoice_id = intent.metadata.get("dmb_invoice_id")
            if not (key and invoice_id and invoice_id.isdigit()):
                return None  # not one of ours
            payment_id = _recover_attempt(conn, int(invoice_id), key, intent, now)
            if payment_id is None:
                return None
        return apply_intent(conn, payment_id, intent, now=now, retry_days=retry_days)


def _recover_attempt(
    conn: sa.Connection, invoice_id: int, key: str, intent: Intent, now: datetime
) -> int | None:
    from dagster_billing.payments.attempts import from_minor, minor_units, row_stamp

    invoice = (
        conn.execute(sa.select(invoices).where(invoices.c.id == invoice_id).with_for_update())
        .mappings()
        .one_or_none()
    )
    ours = (
        f"dmb-invoice-{invoice_id}-{row_stamp(invoice['created_at'])}-attempt-" if invoice else ""
    )
    if invoice is None or not key.startswith(ours):
        return None  # another warehouse's invoice with the same id (a shared Stripe account)
    currency = invoice["currency"].strip()
    attempt = (
        conn.scalar(
            sa.select(sa.func.max(payments.c.attempt)).where(payments.c.invoice_id == invoice_id)
        )
        or 0
    ) + 1
    return conn.execute(
        sa.insert(payments)
        .values(
            invoice_id=invoice_id,
            attempt=attempt,
            amount=from_minor(intent.amount, minor_units(conn, currency)),
            currency=currency,
            provider="stripe",
            status="unknown",
            idempotency_key=key,
            stripe_payment_intent_id=intent.id,
            failure_message="recovered from Stripe: no attempt row was recorded",
            created_at=now,
            updated_at=now,
        )
        .returning(payments.c.id)
    ).scalar_one()


@dataclass
class ReconcileResult:
    checked: int = 0
    resolved: int = 0


def reconcile_due(
    engine: Engine,
    gateway: PaymentGateway,
    *,
    now: datetime,
    retry_days: Sequence[int],
    limit: int = 200,
) -> ReconcileResult:
    with engine.connect() as conn:
        due = due_for_reconciliation(conn, now, limit)
    result = ReconcileResult()
    for payment_id in due:
        result.checked += 1
        if (
            reconcile_payment(engine, gateway, payment_id, now=now, retry_days=retry_days)
            not in IN_FLIGHT
        ):
            result.resolved += 1
    return result
