"""What the write path checks against the catalog tables the warehouse holds."""

from __future__ import annotations

from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.customers.errors import CustomerError
from dagster_billing.warehouse.schema import price_books, subscription_plans


@dataclass(frozen=True)
class Plan:
    id: str
    name: str
    included_seats: int
    seats_sellable: bool
    max_adapters: int | None
    bills_overage: bool
    sort_order: int


def plan(conn: Connection, plan_id: object, field: str = "plan") -> Plan:
    """An active plan, or CustomerError naming `field` and the plans there are."""
    row = (
        conn.execute(
            sa.select(subscription_plans).where(
                subscription_plans.c.id == str(plan_id), subscription_plans.c.active
            )
        )
        .mappings()
        .one_or_none()
    )
    if row is None:
        known = conn.scalars(
            sa.select(subscription_plans.c.id)
            .where(subscription_plans.c.active)
            .order_by(subscription_plans.c.sort_order)
        ).all()
        raise CustomerError(
            field, f"unknown plan {plan_id!r} (expected one of: {', '.join(known)})"
        )
    return Plan(
        id=row["id"],
        name=row["name"],
        included_seats=row["included_seats"],
        seats_sellable=row["seats_sellable"],
        max_adapters=row["max_adapters"],
        bills_overage=row["bills_overage"],
        sort_order=row["sort_order"],
    )


def require_currency(conn: Connection, currency: str, field: str = "currency") -> str:
    """A currency some price book sells in."""
    known = {c.strip() for c in conn.scalars(sa.select(price_books.c.currency).distinct())}
    if currency not in known:
        raise CustomerError(
            field, f"no price book for currency {currency!r} (have: {', '.join(sorted(known))})"
        )
    return currency


def require_price_book(conn: Connection, plan_id: str, currency: str, field: str) -> None:
    found = conn.scalar(
        sa.select(sa.func.count())
        .select_from(price_books)
        .where(price_books.c.plan_id == plan_id, price_books.c.currency == currency)
    )
    if not found:
        raise CustomerError(field, f"plan {plan_id!r} has no price book in {currency}")


def check_seats(plan: Plan, seats: int, field: str = "seats") -> None:
    """A plan that sells no seats allows only its included ones (docs/rate-card.md, free plan)."""
    if seats < 1:
        raise CustomerError(field, f"must be >= 1, got {seats}")
    if not plan.seats_sellable and seats > plan.included_seats:
        raise CustomerError(
            field,
            f"plan {plan.id!r} sells no extra seats ({seats} > {plan.included_seats} included)",
        )
