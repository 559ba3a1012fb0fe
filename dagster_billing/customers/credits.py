"""Credits granted and promotions: rows the dbt credit walk and discount models read."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from dagster_billing.customers.errors import CustomerError
from dagster_billing.customers.organizations import _jsonable, get_organization
from dagster_billing.warehouse import audit
from dagster_billing.warehouse.schema import credits, promotions

CREDIT_TYPES = ("prepaid", "goodwill", "promotion", "balance")


def grant_credit(
    conn: Connection,
    organization: str,
    *,
    amount: Decimal,
    actor: str,
    credit_type: str = "prepaid",
    expires_at: datetime | None = None,
    description: str = "",
    idempotency_key: str | None = None,
) -> dict[str, Any]:
    """A credit grant in the organization's currency; a repeated idempotency key returns
    the first grant instead of adding a second."""
    org = get_organization(conn, organization)
    if not (amount.is_finite() and amount > 0):
        raise CustomerError("amount", f"must be > 0, got {amount}")
    if credit_type not in CREDIT_TYPES:
        raise CustomerError("credit_type", f"must be one of {', '.join(CREDIT_TYPES)}")
    if expires_at is not None and expires_at.tzinfo is None:
        raise CustomerError("expires_at", "needs a timezone (UTC)")
    values = {
        "organization_id": org["id"],
        "entry_type": "grant",
        "credit_type": credit_type,
        "amount": amount,
        "currency": org["currency"],
        "expires_at": expires_at,
        "description": description,
        "idempotency_key": idempotency_key,
    }
    created = conn.execute(
        insert(credits).values(**values).on_conflict_do_nothing().returning(credits.c.id)
    ).scalar_one_or_none()
    if created is None:
        existing = (
            conn.execute(sa.select(credits).where(credits.c.idempotency_key == idempotency_key))
            .mappings()
            .one()
        )
        return dict(existing)
    audit.record(
        conn,
        actor=actor,
        action="credit.granted",
        entity_type="organization",
        entity_id=organization,
        payload=_jsonable(
            {k: v for k, v in values.items() if v is not None and k != "organization_id"}
        ),
    )
    return dict(conn.execute(sa.select(credits).where(credits.c.id == created)).mappings().one())


def add_promotion(
    conn: Connection,
    organization: str,
    *,
    code: str,
    actor: str,
    percent_off: Decimal | None = None,
    amount_off: Decimal | None = None,
    duration_periods: int | None = None,
) -> dict[str, Any]:
    """A promotion applied after the organization's earlier ones
    (docs/rate-card.md, promotions in order)."""
    org = get_organization(conn, organization)
    if (percent_off is None) == (amount_off is None):
        raise CustomerError("percent_off", "give exactly one of percent_off and amount_off")
    if percent_off is not None and not (0 < percent_off <= 100):
        raise CustomerError("percent_off", f"must be > 0 and <= 100, got {percent_off}")
    if amount_off is not None and not (amount_off.is_finite() and amount_off > 0):
        raise CustomerError("amount_off", f"must be > 0, got {amount_off}")
    if duration_periods is not None and duration_periods < 1:
        raise CustomerError("duration_periods", f"must be >= 1, got {duration_periods}")
    if not code.strip():
        raise CustomerError("code", "must not be empty")
    taken = conn.scalar(
        sa.select(promotions.c.id).where(
            promotions.c.organization_id == org["id"], promotions.c.code == code
        )
    )
    if taken:
        raise CustomerError("code", f"promotion {code!r} already applied to {organization!r}")
    position = (
        conn.scalar(
            sa.select(sa.func.max(promotions.c.position)).where(
                promotions.c.organization_id == org["id"]
            )
        )
        or 0
    ) + 1
    values = {
        "organization_id": org["id"],
        "code": code,
        "position": position,
        "percent_off": percent_off,
        "amount_off": amount_off,
        "duration_periods": duration_periods,
    }
    row = (
        conn.execute(sa.insert(promotions).values(**values).returning(promotions)).mappings().one()
    )
    audit.record(
        conn,
        actor=actor,
        action="promotion.added",
        entity_type="organization",
        entity_id=organization,
        payload=_jsonable(
            {k: v for k, v in values.items() if v is not None and k != "organization_id"}
        ),
    )
    return dict(row)


_BALANCE = sa.text(
    """
    select coalesce(sum(c.amount), 0) as balance
    from dictamesh_billing_credits c
    join dictamesh_billing_credits g on g.id = coalesce(c.grant_id, c.id)
    where c.organization_id = :org and (g.expires_at is null or g.expires_at > :now)
    """
)


def credit_balance(
    conn: Connection, organization: str, now: datetime | None = None
) -> dict[str, Any]:
    """Unexpired grants less what finalized invoices applied (the ledger's signed rows);
    drafts not finalized yet have taken nothing."""
    org = get_organization(conn, organization)
    now = now or datetime.now(UTC)
    balance = conn.execute(_BALANCE, {"org": org["id"], "now": now}).scalar_one()
    return {"organization": organization, "currency": org["currency"], "balance": balance}
