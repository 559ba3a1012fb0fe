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
    record_failure,
    to_minor,
)
from dagster_billing.payments.gateway import (
    GatewayDeclinedError,
    GatewayRejectedError,
    GatewayUnknownError,
    PaymentGateway,
)
from dagster_billing.warehouse.schema import payments

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


# The invoice locked, with everything a charge needs, in one round trip. Its subquery reads
# the statement's snapshot, taken before any wait for the lock: after a wait, the attempt
# number may be stale, so the insert below checks it again.
_LOCK_INVOICE = sa.text(
    """
    select i.number, i.status, i.amount_due, i.currency, i.created_at,
           o.stripe_customer_id, m.id as payment_method_id, m.stripe_payment_method_id,
           c.minor_units,
           coalesce((select max(p.attempt) from dictamesh_billing_payments p
                     where p.invoice_id = i.id), 0) + 1 as attempt
    from dictamesh_billing_invoices i
    join dictamesh_billing_organizations o on o.id = i.organization_id
    left join dictamesh_billing_payment_methods m
      on m.organization_id = i.organization_id and m.is_default
    left join dictamesh_billing_currencies c on c.code = i.currency
    where i.id = :invoice_id
    for update of i
    """
)

# A new statement, so a new snapshot: with the lock held it sees every attempt committed
# before, and inserts nothing when one is in flight or succeeded, or when the number read
# above is no longer the next one (another charger held the lock meanwhile).
_INSERT_ATTEMPT = sa.text(
    """
    insert into dictamesh_billing_payments (invoice_id, attempt, amount, currency, provider,
        status, idempotency_key, payment_method_id, created_at, updated_at)
    select :invoice_id, :attempt, :amount, :currency, 'stripe', 'pending', :key,
        :payment_method_id, :now, :now
    where not exists (select 1 from dictamesh_billing_payments p
                      where p.invoice_id = :invoice_id and p.status = any(:busy))
      and (select coalesce(max(p.attempt), 0) + 1 from dictamesh_billing_payments p
           where p.invoice_id = :invoice_id) = :attempt
    returning id
    """
)


def start_attempt(conn: Connection, invoice_id: int, *, now: datetime) -> tuple[int, dict] | None:
    """Lock the invoice, re-check it, insert the next attempt; None when it must not be
    charged now (paid meanwhile, attempt in flight, no payment method). Two statements:
    each is a round trip, and this runs once per invoice of a charge run."""
    invoice = conn.execute(_LOCK_INVOICE, {"invoice_id": invoice_id}).one_or_none()
    if invoice is None:
        raise PaymentError(f"invoice_id: no invoice {invoice_id}")
    if (
        invoice.status != "open"
        or invoice.amount_due <= 0
        or invoice.stripe_customer_id is None
        or invoice.payment_method_id is None
    ):
        return None
    currency = invoice.currency.strip()
    if invoice.minor_units is None:
        raise PaymentError(f"currency: unknown currency {currency!r}")
    key = idempotency_key(invoice_id, invoice.created_at, invoice.attempt)
    payment_id = conn.scalar(
        _INSERT_ATTEMPT,
        {
            "invoice_id": invoice_id,
            "attempt": invoice.attempt,
            "amount": invoice.amount_due,
            "currency": currency,
            "key": key,
            "payment_method_id": invoice.payment_method_id,
            "now": now,
            "busy": [*IN_FLIGHT, "succeeded", "refunded"],
        },
    )
    if payment_id is None:
        return None
    request = {
        "amount": to_minor(invoice.amount_due, invoice.minor_units),
        "currency": currency,
        "customer": invoice.stripe_customer_id,
        "payment_method": invoice.stripe_payment_method_id,
        "metadata": {
            "dmb_invoice_id": str(invoice_id),
            "dmb_invoice_number": invoice.number,
            "dmb_attempt": str(invoice.attempt),
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
