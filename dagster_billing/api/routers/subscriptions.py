"""Subscriptions: create, change (upgrade, downgrade, seats), cancel, upcoming invoice."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request

from dagster_billing import customers
from dagster_billing.api import schemas
from dagster_billing.api.keys import ApiKey
from dagster_billing.api.routers.common import (
    READ_PROBLEMS,
    WRITE_PROBLEMS,
    SubId,
    engine,
    line_out,
    reading,
    text,
)
from dagster_billing.api.security import admin_only, allow, visible
from dagster_billing.customers import NotFoundError
from dagster_billing.invoicing.marts import preview_invoice

router = APIRouter(prefix="/subscriptions", tags=["subscriptions"])

READERS = ("admin", "finance", "org_member")
WRITERS = ("admin", "org_member")


def out(row: dict[str, Any]) -> schemas.Subscription:
    period = row["current_period"]
    return schemas.Subscription(
        id=row["external_id"],
        organization=row["organization_external_id"],
        plan=row["current_plan_id"],
        seats=row["current_seats"],
        initial_plan=row["plan_id"],
        initial_seats=row["seats"],
        billing_cycle=row["billing_cycle"],
        pricing_mode=row["pricing_mode"],
        price_override=text(row["price_override"]),
        status=row["status"],
        started_at=row["started_at"],
        current_period_start=period[0] if period else None,
        current_period_end=period[1] if period else None,
        cancel_at=row["cancel_at"],
        canceled_at=row["canceled_at"],
        changes=[
            schemas.Change(
                effective_at=c["effective_at"],
                plan=c["plan_id"],
                seats=c["seats"],
                reason=c["reason"],
            )
            for c in row["changes"]
        ],
    )


def _visible_sub(conn: Any, key: ApiKey, sub_id: str) -> dict[str, Any]:
    row = customers.get_subscription(conn, sub_id)
    visible(key, row["organization_id"], "subscription", sub_id)
    return row


@router.post("", status_code=201, responses=WRITE_PROBLEMS)
def create_subscription(
    body: schemas.SubscriptionCreate, request: Request, key: ApiKey = Depends(allow(*WRITERS))
) -> schemas.Subscription:
    """Subscribe an organization to a plan from `start` (default now; also the anchor)."""
    with engine(request).begin() as conn:
        org = customers.get_organization(conn, body.organization)
        visible(key, org["id"], "organization", body.organization)
        admin_only(key, price_override=body.price_override, start=body.start)
        return out(customers.create_subscription(conn, **body.model_dump(), actor=key.actor))


@router.get("/{sub_id}", responses=READ_PROBLEMS)
def get_subscription(
    sub_id: SubId, request: Request, key: ApiKey = Depends(allow(*READERS))
) -> schemas.Subscription:
    with reading(request) as conn:
        return out(_visible_sub(conn, key, sub_id))


@router.post("/{sub_id}/change", responses=WRITE_PROBLEMS)
def change_subscription(
    sub_id: SubId,
    body: schemas.SubscriptionChange,
    request: Request,
    key: ApiKey = Depends(allow(*WRITERS)),
) -> schemas.Subscription:
    """Upgrade, downgrade or change seats from `effective_at` (default now), prorated."""
    with engine(request).begin() as conn:
        _visible_sub(conn, key, sub_id)
        admin_only(key, effective_at=body.effective_at)
        return out(
            customers.change_subscription(conn, sub_id, **body.model_dump(), actor=key.actor)
        )


@router.post("/{sub_id}/cancel", responses=WRITE_PROBLEMS)
def cancel_subscription(
    sub_id: SubId,
    body: schemas.SubscriptionCancel,
    request: Request,
    key: ApiKey = Depends(allow(*WRITERS)),
) -> schemas.Subscription:
    """Cancel now (or at `at`), or at the end of the current fee period."""
    with engine(request).begin() as conn:
        _visible_sub(conn, key, sub_id)
        admin_only(key, at=body.at)
        return out(
            customers.cancel_subscription(conn, sub_id, **body.model_dump(), actor=key.actor)
        )


@router.get("/{sub_id}/upcoming-invoice", responses=READ_PROBLEMS)
def upcoming_invoice(
    sub_id: SubId, request: Request, key: ApiKey = Depends(allow(*READERS))
) -> schemas.UpcomingInvoice:
    """The next draft the rating models hold for this subscription, not finalized yet."""
    with reading(request) as conn:
        row = _visible_sub(conn, key, sub_id)
        built = conn.scalar(sa.text("select to_regclass('analytics.fct_invoices')"))
        draft = preview_invoice(conn, row["organization_external_id"]) if built else None
    if draft is None or draft.subscription_external_id != sub_id:
        raise NotFoundError("upcoming invoice of subscription", sub_id)
    return schemas.UpcomingInvoice(
        subscription=sub_id,
        organization=draft.organization_external_id,
        billing_date=draft.billing_date,
        period_start=draft.period_start,
        period_end=draft.period_end,
        currency=draft.currency,
        **{
            k: text(getattr(draft, k)) or "0"
            for k in ("subtotal", "discount", "tax", "total", "credits_applied", "amount_due")
        },
        lines=[line_out(line) for line in draft.lines],
    )
