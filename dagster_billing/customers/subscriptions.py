"""Subscriptions: create, change plan or seats, cancel; read with the current state.

The subscription row keeps the state it started in (plan, seats, price override) and
every later change is a row in `subscription_changes`: that history is what the dbt
models price (`int_subscription_states`), so nothing here rewrites the past. A change is
appended after the latest one; a cancellation sets `cancel_at`, immediately or at the
end of the current fee period (monthly, or the term year of an annual plan).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.customers import catalog
from dagster_billing.customers.errors import CustomerError, NotFoundError
from dagster_billing.customers.organizations import _jsonable, check_external_id, get_organization
from dagster_billing.events import catalog as events
from dagster_billing.events.outbox import write_events
from dagster_billing.warehouse import audit
from dagster_billing.warehouse.calendar import billing_period
from dagster_billing.warehouse.schema import organizations, subscription_changes, subscriptions

CYCLES = ("monthly", "annual")
PRICING_MODES = ("graduated", "volume")


def _utc(value: datetime, field: str) -> datetime:
    if value.tzinfo is None:
        raise CustomerError(field, f"needs a timezone (UTC), got {value.isoformat()}")
    return value.astimezone(UTC)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _row(conn: Connection, external_id: str, lock: bool = False) -> dict[str, Any]:
    query = (
        sa.select(subscriptions, organizations.c.external_id.label("organization_external_id"))
        .join(organizations, organizations.c.id == subscriptions.c.organization_id)
        .where(subscriptions.c.external_id == external_id)
    )
    if lock:
        query = query.with_for_update(of=subscriptions)
    row = conn.execute(query).mappings().one_or_none()
    if row is None:
        raise NotFoundError("subscription", external_id)
    return dict(row)


def _changes(conn: Connection, subscription_id: int) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in conn.execute(
            sa.select(subscription_changes)
            .where(subscription_changes.c.subscription_id == subscription_id)
            .order_by(subscription_changes.c.effective_at, subscription_changes.c.id)
        ).mappings()
    ]


def state_at(row: dict[str, Any], changes: list[dict[str, Any]], at: datetime) -> tuple[str, int]:
    """Plan and seats in force at `at`: each change carries only what it changes."""
    plan, seats = row["plan_id"], row["seats"]
    for change in changes:
        if change["effective_at"] > at:
            break
        plan, seats = change["plan_id"] or plan, change["seats"] or seats
    return plan, seats


def live_subscription(
    conn: Connection, organization_id: int, now: datetime
) -> tuple[dict[str, Any], str, int] | None:
    """The organization's subscription running at `now` (at most one: docs/rate-card.md, one
    subscription per organization), with the plan and seats in force; None between them."""
    row = (
        conn.execute(
            sa.select(subscriptions).where(
                subscriptions.c.organization_id == organization_id,
                subscriptions.c.started_at <= now,
                sa.or_(subscriptions.c.cancel_at.is_(None), subscriptions.c.cancel_at > now),
            )
        )
        .mappings()
        .first()
    )
    if row is None:
        return None
    plan, seats = state_at(dict(row), _changes(conn, row["id"]), now)
    return dict(row), plan, seats


def get_subscription(
    conn: Connection, external_id: str, now: datetime | None = None
) -> dict[str, Any]:
    """The subscription with its change history and the plan and seats in force now."""
    row = _row(conn, external_id)
    changes = _changes(conn, row["id"])
    now = now or datetime.now(UTC)
    plan, seats = state_at(row, changes, now)
    ended = row["cancel_at"] is not None and row["cancel_at"] <= now
    period = None
    if not ended and row["started_at"] <= now:
        fees = billing_period(conn, row["billing_anchor"], row["billing_cycle"], now)
        period = (fees.fee_start, fees.fee_end)
    return {
        **row,
        "current_plan_id": plan,
        "current_seats": seats,
        "status": "canceled" if ended else row["status"],
        "current_period": period,
        "changes": changes,
    }


def create_subscription(
    conn: Connection,
    *,
    organization: str,
    plan: str,
    seats: int,
    actor: str,
    billing_cycle: str = "monthly",
    start: datetime | None = None,
    pricing_mode: str = "graduated",
    price_override: Decimal | None = None,
    external_id: str | None = None,
    metadata: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A subscription starting at `start` (default now), which is also its billing anchor."""
    org = get_organization(conn, organization)
    chosen = catalog.plan(conn, plan)
    catalog.require_price_book(conn, chosen.id, org["currency"], "plan")
    catalog.check_seats(chosen, seats)
    if billing_cycle not in CYCLES:
        raise CustomerError("billing_cycle", f"must be one of {', '.join(CYCLES)}")
    if pricing_mode not in PRICING_MODES:
        raise CustomerError("pricing_mode", f"must be one of {', '.join(PRICING_MODES)}")
    if price_override is not None and not (price_override.is_finite() and price_override >= 0):
        raise CustomerError("price_override", f"must be >= 0, got {price_override}")
    start = _utc(start, "start") if start is not None else datetime.now(UTC)
    external_id = check_external_id(external_id or f"sub_{uuid.uuid4().hex[:20]}")
    if conn.scalar(sa.select(subscriptions.c.id).where(subscriptions.c.external_id == external_id)):
        raise CustomerError("external_id", f"subscription {external_id!r} already exists")
    # One subscription at a time (docs/rate-card.md; also an exclusion constraint).
    overlapping = conn.scalar(
        sa.select(subscriptions.c.external_id).where(
            subscriptions.c.organization_id == org["id"],
            sa.or_(subscriptions.c.cancel_at.is_(None), subscriptions.c.cancel_at > start),
        )
    )
    if overlapping is not None:
        raise CustomerError(
            "start", f"overlaps subscription {overlapping!r} of organization {organization!r}"
        )
    conn.execute(
        sa.insert(subscriptions).values(
            external_id=external_id,
            organization_id=org["id"],
            plan_id=chosen.id,
            billing_cycle=billing_cycle,
            seats=seats,
            pricing_mode=pricing_mode,
            price_override=price_override,
            billing_anchor=start,
            started_at=start,
            metadata=metadata or {},
        )
    )
    audit.record(
        conn,
        actor=actor,
        action="subscription.created",
        entity_type="subscription",
        entity_id=external_id,
        payload=_jsonable(
            {
                "organization": organization,
                "plan_id": chosen.id,
                "seats": seats,
                "billing_cycle": billing_cycle,
                "started_at": _iso(start),
                **({"price_override": price_override} if price_override is not None else {}),
            }
        ),
    )
    created = events.subscription_created(
        subscription_id=external_id,
        organization_id=organization,
        plan_id=chosen.id,
        billing_cycle=billing_cycle,
        seats=seats,
        started_at=start,
    )
    write_events(conn, [created])
    return get_subscription(conn, external_id)


def change_subscription(
    conn: Connection,
    external_id: str,
    *,
    actor: str,
    plan: str | None = None,
    seats: int | None = None,
    effective_at: datetime | None = None,
) -> dict[str, Any]:
    """Upgrade, downgrade or change seats from `effective_at` (default now); the dbt models
    prorate the rest of the period."""
    if plan is None and seats is None:
        raise CustomerError("plan", "a change needs a plan or seats")
    row = _row(conn, external_id, lock=True)
    at = _utc(effective_at, "effective_at") if effective_at is not None else datetime.now(UTC)
    if at < row["started_at"]:
        raise CustomerError(
            "effective_at", f"before the subscription's start {_iso(row['started_at'])}"
        )
    if row["cancel_at"] is not None and at >= row["cancel_at"]:
        raise CustomerError(
            "effective_at", f"at or after the cancellation at {_iso(row['cancel_at'])}"
        )
    changes = _changes(conn, row["id"])
    if changes and at <= changes[-1]["effective_at"]:
        raise CustomerError(
            "effective_at",
            f"must be after the latest change at {_iso(changes[-1]['effective_at'])}",
        )
    old_plan_id, old_seats = state_at(row, changes, at)
    old_plan = catalog.plan(conn, old_plan_id)
    new_plan = catalog.plan(conn, plan) if plan is not None else old_plan
    org_currency = get_organization(conn, row["organization_external_id"])["currency"]
    catalog.require_price_book(conn, new_plan.id, org_currency, "plan")
    new_seats = seats if seats is not None else old_seats
    catalog.check_seats(new_plan, new_seats)
    if new_plan.id == old_plan_id and new_seats == old_seats:
        raise CustomerError("plan" if plan is not None else "seats", "changes nothing")
    if new_plan.sort_order > old_plan.sort_order:
        reason = "upgrade"
    elif new_plan.sort_order < old_plan.sort_order:
        reason = "downgrade"
    else:
        reason = "seats"
    change_id = conn.execute(
        sa.insert(subscription_changes)
        .values(
            subscription_id=row["id"],
            effective_at=at,
            plan_id=new_plan.id if new_plan.id != old_plan_id else None,
            seats=new_seats if new_seats != old_seats else None,
            reason=reason,
        )
        .returning(subscription_changes.c.id)
    ).scalar_one()
    conn.execute(
        sa.update(subscriptions)
        .where(subscriptions.c.id == row["id"])
        .values(updated_at=sa.func.now())
    )
    details = {
        "change": reason,
        "effective_at": _iso(at),
        "from_plan_id": old_plan_id,
        "to_plan_id": new_plan.id,
        "from_seats": old_seats,
        "to_seats": new_seats,
    }
    audit.record(
        conn,
        actor=actor,
        action=f"subscription.{reason}",
        entity_type="subscription",
        entity_id=external_id,
        payload=details,
    )
    changed = {"plan_id": (old_plan_id, new_plan.id), "seats": (old_seats, new_seats)}
    updated = events.subscription_updated(
        subscription_id=external_id,
        organization_id=row["organization_external_id"],
        effective_at=at,
        change_id=str(change_id),
        changes={k: {"from": a, "to": b} for k, (a, b) in changed.items() if a != b},
    )
    write_events(conn, [updated])
    return get_subscription(conn, external_id)


def cancel_subscription(
    conn: Connection,
    external_id: str,
    *,
    actor: str,
    at_period_end: bool = False,
    at: datetime | None = None,
) -> dict[str, Any]:
    """End the subscription at `at` (default now) or at the end of the fee period holding
    it; the final invoice and any credit for unused time come from the dbt models."""
    row = _row(conn, external_id, lock=True)
    now = _utc(at, "at") if at is not None else datetime.now(UTC)
    if row["cancel_at"] is not None and row["cancel_at"] <= now:
        raise CustomerError("subscription", f"already ended at {_iso(row['cancel_at'])}")
    if now <= row["started_at"]:
        raise CustomerError("at", f"not after the subscription's start {_iso(row['started_at'])}")
    if at_period_end:
        cancel_at = billing_period(conn, row["billing_anchor"], row["billing_cycle"], now).fee_end
        if row["cancel_at"] is not None and row["cancel_at"] <= cancel_at:
            raise CustomerError("at_period_end", f"already ends at {_iso(row['cancel_at'])}")
    else:
        cancel_at = now
    changes = _changes(conn, row["id"])
    if changes and changes[-1]["effective_at"] >= cancel_at:
        raise CustomerError(
            "at", f"a change takes effect at {_iso(changes[-1]['effective_at'])}, after it"
        )
    conn.execute(
        sa.update(subscriptions)
        .where(subscriptions.c.id == row["id"])
        .values(
            cancel_at=cancel_at,
            canceled_at=now,
            status="active" if at_period_end else "canceled",
            updated_at=sa.func.now(),
        )
    )
    details = {"cancel_at": _iso(cancel_at), "at_period_end": at_period_end}
    audit.record(
        conn,
        actor=actor,
        action="subscription.canceled",
        entity_type="subscription",
        entity_id=external_id,
        payload=details,
    )
    canceled = events.subscription_canceled(
        subscription_id=external_id,
        organization_id=row["organization_external_id"],
        canceled_at=now,
        ends_at=cancel_at,
    )
    write_events(conn, [canceled])
    return get_subscription(conn, external_id, now=now)
