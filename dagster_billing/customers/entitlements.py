"""Entitlements: the limits a plan sets that are not billed (adapters; seats on a plan
that sells none; every quota of a plan that bills no overage). Services call `check`
before they let an organization use more."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.customers import catalog
from dagster_billing.customers.errors import CustomerError, NotFoundError
from dagster_billing.customers.organizations import get_organization
from dagster_billing.customers.subscriptions import live_subscription
from dagster_billing.warehouse.schema import plan_quotas


class EntitlementExceededError(PermissionError):
    """Using `requested` of `limit` would go past what the plan allows."""

    def __init__(self, limit: str, requested: Decimal, allowed: Decimal) -> None:
        super().__init__(f"{limit}: {requested} exceeds the plan's limit of {allowed}")
        self.limit = limit
        self.requested = requested
        self.allowed = allowed


@dataclass(frozen=True)
class Entitlements:
    organization: str
    plan_id: str | None
    # limit name -> the most allowed (None: unlimited)
    limits: dict[str, Decimal | None]


def entitlements(conn: Connection, organization: str, now: datetime | None = None) -> Entitlements:
    """The limits in force now; an organization without a live subscription gets none."""
    org = get_organization(conn, organization)
    now = now or datetime.now(UTC)
    live = live_subscription(conn, org["id"], now)
    if live is None:
        return Entitlements(organization, None, {"adapters": Decimal(0), "seats": Decimal(0)})
    _, plan_id, seats = live
    plan = catalog.plan(conn, plan_id)
    limits: dict[str, Decimal | None] = {
        "adapters": None if plan.max_adapters is None else Decimal(plan.max_adapters),
        "seats": Decimal(seats),
    }
    if not plan.bills_overage:
        for metric, quantity in conn.execute(
            sa.select(plan_quotas.c.metric, plan_quotas.c.included_quantity).where(
                plan_quotas.c.plan_id == plan.id
            )
        ):
            limits[metric] = quantity
    return Entitlements(organization, plan.id, limits)


def check(conn: Connection, organization: str, limit: str, requested: Decimal) -> dict[str, Any]:
    """Allowed: the limit's figures. Not allowed: EntitlementExceededError naming the limit."""
    found = entitlements(conn, organization)
    if limit not in found.limits:
        if limit in {"api_calls", "storage", "transfer", "query_processing"}:
            # a plan that bills overage sells more instead of refusing it
            return {
                "limit": limit,
                "requested": requested,
                "allowed": None,
                "plan_id": found.plan_id,
            }
        raise CustomerError("limit", f"unknown limit {limit!r} (have: {', '.join(found.limits)})")
    if requested < 0:
        raise CustomerError("quantity", f"must be >= 0, got {requested}")
    allowed = found.limits[limit]
    if allowed is not None and requested > allowed:
        raise EntitlementExceededError(limit, requested, allowed)
    return {"limit": limit, "requested": requested, "allowed": allowed, "plan_id": found.plan_id}


__all__ = ["EntitlementExceededError", "Entitlements", "NotFoundError", "check", "entitlements"]
