"""Charging an open invoice: the attempt row is committed before Stripe is called.

1. One transaction locks the invoice, re-checks it is open, unpaid and has no attempt in
   flight, and inserts attempt n with its idempotency key (`invoice`, `n`). The unique
   partial index `payments_one_in_flight` makes a second in-flight attempt impossible
   even for code that forgets the lock.
2. Stripe is called (create + confirm off-session, the key attached).
3. A second transaction records the outcome. If the process dies between 2 and 3, or the
   call times out, the attempt stays `pending`/`unknown` and the reconciliation sensor
   looks the PaymentIntent up by the stored id or by our metadata: it is never charged
   again blindly.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dagster_billing.payments import PaymentError
from dagster_billing.payments.attempts import (
    IN_FLIGHT,
    apply_intent,
    idempotency_key,
    minor_units,
    record_failure,
    to_minor,
)
from dagster_billing.payments.gateway import (
    GatewayDeclinedError,
    GatewayRejectedError,
    GatewayUnknownError,
    PaymentGateway,
)
from dagster_billing.warehouse.schema import invoices, organizations, payment_methods, payments

FIRST_RECONCILE_AFTER = timedelta(minutes=5)

# Open invoices that may be charged at `as_of`: money due, a default payment method, no
# attempt in flight, never succeeded, and either never tried or the last failed attempt's
# retry is due (a failure without next_retry_at is final: dunning gave up).
_DUE = sa.text(
    """
    select i.id from dictamesh_billing_invoices i
    join dictamesh_billing_organizations o on o.id = i.organization_id
    where i.status = 'open' and i.amount_due > 0 and o.stripe_customer_id is not null
      and exists (select 1 from dictamesh_billing_payment_methods m
                  where m.organization_id = i.organization_id and m.is_default)
      and not exists (select 1 from dictamesh_billing_payments p
                      where p.invoice_id = i.id
                        and p.status in ('pending', 'unknown', 'processing', 'requires_action',
                                         'succeeded', 'refunded'))
      and coalesce((select p.next_retry_at <= :as_of
                    from dictamesh_billing_payments p
                    where p.invoice_id = i.id and p.provider = 'stripe' and p.status = 'failed'
                    order by p.attempt desc limit 1), true)
    order by i.id
    """
)


def invoices_to_charge(conn: Connection, as_of: datetime) -> list[int]:
    return list(conn.scalars(_DUE, {"as_of": as_of}))


@dataclass(frozen=True)
class ChargeOutcome:
    invoice_id: int
    payment_id: int | None
    status: str
    failure_code: str | None = None


@dataclass
class ChargeSummary:
    outcomes: list[ChargeOutcome] = field(default_factory=list)

    def count(self, status: str) -> int:
        return sum(1 for o in self.outcomes if o.status == status)


def start_attempt(conn: Connection, invoice_id: int, *, now: datetime) -> tuple[int, dict] | None:
    """Lock the invoice, re-check it, insert the next attempt; None when it must not be
    charged now (paid meanwhile, attempt in flight, no payment method)."""
    invoice = (
        conn.execute(sa.select(invoices).where(invoices.c.id == invoice_id).with_for_update())
        .mappings()
        .one_or_none()
    )
    if invoice is None:
        raise PaymentError(f"invoice_id: no invoice {invoice_id}")
    if invoice["status"] != "open" or invoice["amount_due"] <= 0:
        return None
    busy = conn.scalar(
        sa.select(sa.func.count())
        .select_from(payments)
        .where(
            payments.c.invoice_id == invoice_id,
            payments.c.status.in_([*IN_FLIGHT, "succeeded", "refunded"]),
        )
    )
    if busy:
        return None
    target = conn.execute(
        sa.select(
            organizations.c.stripe_customer_id,
            payment_methods.c.id,
            payment_methods.c.stripe_payment_method_id,
        )
        .join(payment_methods, payment_methods.c.organization_id == organizations.c.id)
        .where(organizations.c.id == invoice["organization_id"], payment_methods.c.is_default)
    ).one_or_none()
    if target is None or target[0] is None:
        return None
    attempt = (
        conn.scalar(
            sa.select(sa.func.max(payments.c.attempt)).where(payments.c.invoice_id == invoice_id)
        )
        or 0
    ) + 1
    key = idempotency_key(invoice_id, invoice["created_at"], attempt)
    currency = invoice["currency"].strip()
    payment_id = conn.execute(
        sa.insert(payments)
        .values(
            invoice_id=invoice_id,
            attempt=attempt,
            amount=invoice["amount_due"],
            currency=currency,
            provider="stripe",
            status="pending",
            idempotency_key=key,
            payment_method_id=target[1],
            created_at=now,
            updated_at=now,
        )
        .returning(payments.c.id)
    ).scalar_one()
    request = {
        "amount": to_minor(invoice["amount_due"], minor_units(conn, currency)),
        "currency": currency,
        "customer": target[0],
        "payment_method": target[2],
        "metadata": {
            "dmb_invoice_id": str(invoice_id),
            "dmb_invoice_number": invoice["number"],
            "dmb_attempt": str(attempt),
            "dmb_idempotency_key": key,
        },
        "idempotency_key": key,
    }
    return payment_id, request


def charge_invoice(
    engine: Engine,
    gateway: PaymentGateway,
    invoice_id: int,
    *,
    now: datetime,
    retry_days: Sequence[int] = (1, 3, 5, 7),
) -> ChargeOutcome:
    """Charge one invoice's amount due to its organization's default payment method."""
    with engine.begin() as conn:
        started = start_attempt(conn, invoice_id, now=now)
    if started is None:
        return ChargeOutcome(invoice_id, None, "skipped")
    payment_id, request = started
    try:
        intent = gateway.create_payment_intent(**request)
    except GatewayDeclinedError as exc:
        with engine.begin() as conn:
            if exc.intent is not None:
                status = apply_intent(conn, payment_id, exc.intent, now=now, retry_days=retry_days)
                if status == "failed":
                    return ChargeOutcome(invoice_id, payment_id, status, exc.intent.failure_code)
            record_failure(
                conn,
                payment_id,
                code=exc.code,
                decline_code=exc.decline_code,
                message=exc.message,
                intent_id=exc.intent.id if exc.intent else None,
                now=now,
                retry_days=retry_days,
            )
        return ChargeOutcome(invoice_id, payment_id, "failed", exc.code)
    except GatewayRejectedError as exc:
        with engine.begin() as conn:
            record_failure(
                conn,
                payment_id,
                code="rejected",
                decline_code=None,
                message=str(exc),
                intent_id=None,
                now=now,
                retry_days=retry_days,
                dunning=False,
            )
        return ChargeOutcome(invoice_id, payment_id, "failed", "rejected")
    except GatewayUnknownError as exc:
        with engine.begin() as conn:
            conn.execute(
                sa.update(payments)
                .where(payments.c.id == payment_id, payments.c.status == "pending")
                .values(
                    status="unknown",
                    failure_message=str(exc)[:500],
                    next_reconcile_at=now + FIRST_RECONCILE_AFTER,
                    updated_at=sa.func.now(),
                )
            )
        return ChargeOutcome(invoice_id, payment_id, "unknown")
    with engine.begin() as conn:
        status = apply_intent(conn, payment_id, intent, now=now, retry_days=retry_days)
        if status in IN_FLIGHT:
            conn.execute(
                sa.update(payments)
                .where(payments.c.id == payment_id)
                .values(next_reconcile_at=now + FIRST_RECONCILE_AFTER)
            )
    return ChargeOutcome(invoice_id, payment_id, status, intent.failure_code)


def charge_due_invoices(
    engine: Engine,
    gateway: PaymentGateway,
    *,
    now: datetime,
    retry_days: Sequence[int] = (1, 3, 5, 7),
    limit: int | None = None,
    workers: int = 1,
) -> ChargeSummary:
    """Charge every invoice due at `now` (first attempts and dunning retries). With
    `workers` > 1 that many threads charge at once: Stripe's latency, not ours, bounds a
    run, and the gateway's rate limit keeps the pace."""
    with engine.connect() as conn:
        due = invoices_to_charge(conn, now)[:limit]

    def charge(invoice_id: int) -> ChargeOutcome:
        return charge_invoice(engine, gateway, invoice_id, now=now, retry_days=retry_days)

    if workers <= 1:
        return ChargeSummary([charge(invoice_id) for invoice_id in due])
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return ChargeSummary(list(pool.map(charge, due)))
