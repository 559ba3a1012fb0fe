"""Organizations, their entitlements, credits and promotions."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Request

from dagster_billing import customers
from dagster_billing.api import schemas
from dagster_billing.api.keys import ApiKey
from dagster_billing.api.routers.common import (
    READ_PROBLEMS,
    WRITE_PROBLEMS,
    OrgId,
    engine,
    reading,
    text,
)
from dagster_billing.api.security import admin_only, allow, visible
from dagster_billing.customers import entitlements as ent

router = APIRouter(prefix="/organizations", tags=["organizations"])

READERS = ("admin", "finance", "org_member")


def out(row: dict[str, Any]) -> schemas.Organization:
    return schemas.Organization(
        id=row["external_id"],
        **{
            k: row[k]
            for k in (
                "name",
                "email",
                "currency",
                "locale",
                "tax_exempt",
                "tax_jurisdiction",
                "billing_address",
                "status",
                "metadata",
                "created_at",
                "updated_at",
            )
        },
        tax_rate=text(row["tax_rate"]),
    )


def _visible_org(conn: Any, key: ApiKey, org_id: str) -> dict[str, Any]:
    row = customers.get_organization(conn, org_id)
    visible(key, row["id"], "organization", org_id)
    return row


@router.post("", status_code=201, responses=WRITE_PROBLEMS)
def create_organization(
    body: schemas.OrganizationCreate, request: Request, key: ApiKey = Depends(allow("admin"))
) -> schemas.Organization:
    """Create an organization (admin)."""
    with engine(request).begin() as conn:
        return out(customers.create_organization(conn, **body.model_dump(), actor=key.actor))


@router.get("/{org_id}", responses=READ_PROBLEMS)
def get_organization(
    org_id: OrgId, request: Request, key: ApiKey = Depends(allow(*READERS))
) -> schemas.Organization:
    with reading(request) as conn:
        return out(_visible_org(conn, key, org_id))


@router.put("/{org_id}", responses=WRITE_PROBLEMS)
def update_organization(
    org_id: OrgId,
    body: schemas.OrganizationUpdate,
    request: Request,
    key: ApiKey = Depends(allow("admin", "org_member")),
) -> schemas.Organization:
    """Change the fields given; fields left out stay as they are."""
    with engine(request).begin() as conn:
        _visible_org(conn, key, org_id)
        changes = body.model_dump(exclude_unset=True)
        admin_only(key, status=changes.get("status"), currency=changes.get("currency"))
        return out(customers.update_organization(conn, org_id, changes, actor=key.actor))


@router.get("/{org_id}/entitlements", responses=READ_PROBLEMS)
def get_entitlements(
    org_id: OrgId, request: Request, key: ApiKey = Depends(allow(*READERS, "service"))
) -> schemas.Entitlements:
    """The plan's limits in force now (null: unlimited)."""
    with reading(request) as conn:
        _visible_org(conn, key, org_id)
        found = ent.entitlements(conn, org_id)
    return schemas.Entitlements(
        organization=org_id,
        plan=found.plan_id,
        limits={name: text(value) for name, value in found.limits.items()},
    )


@router.get("/{org_id}/entitlements/{limit}", responses=READ_PROBLEMS)
def check_entitlement(
    org_id: OrgId,
    limit: Annotated[str, Path(pattern=r"^[a-z_]{1,64}$")],
    quantity: Annotated[Decimal, Query(ge=0, max_digits=24, decimal_places=6)] = Decimal(1),
    *,
    request: Request,
    key: ApiKey = Depends(allow(*READERS, "service")),
) -> schemas.EntitlementCheck:
    """May the organization use `quantity` of `limit`? 200 if so, 403 naming the limit."""
    with reading(request) as conn:
        _visible_org(conn, key, org_id)
        result = ent.check(conn, org_id, limit, quantity)
    return schemas.EntitlementCheck(
        limit=result["limit"],
        requested=text(result["requested"]) or "0",
        allowed=text(result["allowed"]),
        plan=result["plan_id"],
    )


@router.get("/{org_id}/credit-balance", responses=READ_PROBLEMS)
def get_credit_balance(
    org_id: OrgId, request: Request, key: ApiKey = Depends(allow(*READERS))
) -> schemas.CreditBalance:
    """Unexpired credit not yet applied to a finalized invoice."""
    with reading(request) as conn:
        _visible_org(conn, key, org_id)
        found = customers.credit_balance(conn, org_id)
    return schemas.CreditBalance(
        organization=org_id, currency=found["currency"], balance=text(found["balance"]) or "0"
    )


@router.post("/{org_id}/credits", status_code=201, responses=WRITE_PROBLEMS)
def grant_credit(
    org_id: OrgId,
    body: schemas.CreditGrant,
    request: Request,
    key: ApiKey = Depends(allow("admin")),
) -> schemas.Credit:
    """Grant credit in the organization's currency (admin)."""
    with engine(request).begin() as conn:
        row = customers.grant_credit(conn, org_id, **body.model_dump(), actor=key.actor)
    return schemas.Credit(
        id=row["id"],
        credit_type=row["credit_type"],
        amount=text(row["amount"]) or "0",
        currency=row["currency"].strip(),
        expires_at=row["expires_at"],
        description=row["description"],
    )


@router.post("/{org_id}/promotions", status_code=201, responses=WRITE_PROBLEMS)
def add_promotion(
    org_id: OrgId,
    body: schemas.PromotionCreate,
    request: Request,
    key: ApiKey = Depends(allow("admin")),
) -> schemas.Promotion:
    """Apply a promotion after the organization's earlier ones (admin)."""
    with engine(request).begin() as conn:
        row = customers.add_promotion(conn, org_id, **body.model_dump(), actor=key.actor)
    return schemas.Promotion(
        code=row["code"],
        position=row["position"],
        percent_off=text(row["percent_off"]),
        amount_off=text(row["amount_off"]),
        duration_periods=row["duration_periods"],
    )
