"""Dunning: when a failed charge is tried again, and when we stop.

The schedule is data (PAYMENT_RETRY_SCHEDULE, default 1,3,5,7): retry n happens that
many days after the *first* failed attempt, so a slow retry does not push the rest back.
No retry after a hard decline (the bank said never) or when the organization has no
default payment method; after the last retry fails the invoice becomes uncollectible
(it can still be paid by hand or voided).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.invoicing.lifecycle import mark_uncollectible
from dagster_billing.warehouse.schema import payment_methods, payments

DUNNING_ACTOR = "dunning"

# Stripe's decline codes that mean "do not try this card again".
HARD_DECLINES = frozenset(
    {
        "do_not_honor_permanently",
        "do_not_try_again",
        "fraudulent",
        "incorrect_number",
        "invalid_account",
        "lost_card",
        "merchant_blacklist",
        "pickup_card",
        "restricted_card",
        "revocation_of_all_authorizations",
        "revocation_of_authorization",
        "security_violation",
        "stolen_card",
        "stop_payment_order",
    }
)


def is_hard_decline(code: str | None, decline_code: str | None) -> bool:
    return (decline_code or "") in HARD_DECLINES or (code or "") in HARD_DECLINES


def after_failure(
    conn: Connection,
    payment: Mapping[str, Any],
    invoice: Mapping[str, Any],
    *,
    now: datetime,
    retry_days: Sequence[int],
) -> datetime | None:
    """Schedule the next retry on the failed attempt (its `next_retry_at`), or give up:
    returns the retry time, None when the invoice was written off instead."""
    failed = conn.execute(
        sa.select(sa.func.count(), sa.func.min(payments.c.created_at)).where(
            payments.c.invoice_id == invoice["id"],
            payments.c.provider == "stripe",
            payments.c.status == "failed",
        )
    ).one()
    failures, first_failure = int(failed[0]), failed[1] or now
    has_method = conn.scalar(
        sa.select(sa.func.count())
        .select_from(payment_methods)
        .where(
            payment_methods.c.organization_id == invoice["organization_id"],
            payment_methods.c.is_default,
        )
    )
    hard = is_hard_decline(payment["failure_code"], payment["decline_code"])
    if not hard and has_method and failures <= len(retry_days):
        retry_at = first_failure + timedelta(days=retry_days[failures - 1])
        conn.execute(
            sa.update(payments).where(payments.c.id == payment["id"]).values(next_retry_at=retry_at)
        )
        return retry_at
    if invoice["status"] == "open":
        why = (
            "hard decline"
            if hard
            else "no payment method"
            if not has_method
            else f"{failures} failed attempts"
        )
        mark_uncollectible(
            conn,
            invoice["number"],
            reason=f"dunning ended: {why} ({payment['decline_code'] or payment['failure_code']})",
            actor=DUNNING_ACTOR,
            at=now,
        )
    return None
