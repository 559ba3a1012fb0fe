"""Payments, payment methods and refunds: delegated to dagster_billing.payments.

Until that module is wired in, each route authenticates, checks the caller may see the
object (so a probe of another organization still answers 404), then answers 501.
"""

from __future__ import annotations

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request

from dagster_billing.api import schemas
from dagster_billing.api.keys import ApiKey
from dagster_billing.api.problems import Problem, problem_responses
from dagster_billing.api.routers.common import WRITE_PROBLEMS, RowId, engine
from dagster_billing.api.security import allow, visible
from dagster_billing.customers import NotFoundError, get_organization
from dagster_billing.warehouse.schema import invoices, payments

router = APIRouter(tags=["payments"])
PROBLEMS = {**WRITE_PROBLEMS, **problem_responses(501)}


def _not_yet(what: str) -> Problem:
    return Problem(501, f"{what} is not available yet: the payments module is not wired in")


def _invoice_org(request: Request, invoice_id: int) -> int:
    with engine(request).connect() as conn:
        found = conn.scalar(
            sa.select(invoices.c.organization_id).where(invoices.c.id == invoice_id)
        )
    if found is None:
        raise NotFoundError("invoice", str(invoice_id))
    return found


@router.post("/payments", status_code=201, responses=PROBLEMS)
def create_payment(
    body: schemas.PaymentCreate,
    request: Request,
    key: ApiKey = Depends(allow("admin", "finance", "org_member")),
) -> dict[str, str]:
    """Pay an open invoice now."""
    visible(key, _invoice_org(request, body.invoice), "invoice", str(body.invoice))
    raise _not_yet("paying an invoice")


@router.get("/payments/{payment_id}", responses=PROBLEMS)
def get_payment(
    payment_id: RowId,
    request: Request,
    key: ApiKey = Depends(allow("admin", "finance", "org_member")),
) -> dict[str, str]:
    with engine(request).connect() as conn:
        found = conn.scalar(
            sa.select(invoices.c.organization_id)
            .join(payments, payments.c.invoice_id == invoices.c.id)
            .where(payments.c.id == payment_id)
        )
    if found is None:
        raise NotFoundError("payment", str(payment_id))
    visible(key, found, "payment", str(payment_id))
    raise _not_yet("reading a payment")


@router.post("/payments/{payment_id}/refund", status_code=201, responses=PROBLEMS)
def refund_payment(
    payment_id: RowId,
    body: schemas.RefundCreate,
    request: Request,
    key: ApiKey = Depends(allow("admin", "finance")),
) -> dict[str, str]:
    """Refund a payment, whole or in part (admin, finance)."""
    with engine(request).connect() as conn:
        found = conn.scalar(sa.select(payments.c.id).where(payments.c.id == payment_id))
    if found is None:
        raise NotFoundError("payment", str(payment_id))
    raise _not_yet("refunding a payment")


@router.post("/payment-methods", status_code=201, responses=PROBLEMS)
def create_payment_method(
    body: schemas.PaymentMethodCreate,
    request: Request,
    key: ApiKey = Depends(allow("admin", "org_member")),
) -> dict[str, str]:
    """Attach a Stripe PaymentMethod (its id only; card data never reaches this API)."""
    with engine(request).connect() as conn:
        org = get_organization(conn, body.organization)
    visible(key, org["id"], "organization", body.organization)
    raise _not_yet("adding a payment method")
