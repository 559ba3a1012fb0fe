"""Invoices: the finalized ones (drafts are the rating marts' and the upcoming invoice)."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request, Response

from dagster_billing.api import schemas
from dagster_billing.api.keys import ApiKey
from dagster_billing.api.problems import MEDIA_TYPE, field_problem
from dagster_billing.api.routers.common import (
    READ_PROBLEMS,
    WRITE_PROBLEMS,
    RowId,
    engine,
    line_out,
    reading,
    text,
)
from dagster_billing.api.schemas import EXTERNAL_ID, Timestamp
from dagster_billing.api.security import allow, scoped_organization, visible
from dagster_billing.customers import NotFoundError, get_organization
from dagster_billing.invoicing.lifecycle import void_invoice
from dagster_billing.invoicing.pdf import render_invoice_number
from dagster_billing.resources import InvoicingResource
from dagster_billing.warehouse.schema import (
    invoice_line_items,
    invoices,
    organizations,
    subscriptions,
)

router = APIRouter(prefix="/invoices", tags=["invoices"])

READERS = ("admin", "finance", "org_member")
MONEY = ("subtotal", "discount", "tax", "total", "credits_applied", "amount_due")
STATUSES = Literal["draft", "open", "paid", "void", "uncollectible"]

_COLUMNS = (
    invoices,
    organizations.c.external_id.label("organization"),
    subscriptions.c.external_id.label("subscription"),
)


def _base() -> sa.Select:
    return (
        sa.select(*_COLUMNS)
        .join(organizations, organizations.c.id == invoices.c.organization_id)
        .join(subscriptions, subscriptions.c.id == invoices.c.subscription_id)
    )


def out(row: Any, lines: list[Any] | None = None) -> schemas.Invoice:
    return schemas.Invoice(
        id=row.id,
        number=row.number,
        organization=row.organization,
        subscription=row.subscription,
        status=row.status,
        currency=row.currency.strip(),
        period_start=row.period_start,
        period_end=row.period_end,
        **{k: text(getattr(row, k)) or "0" for k in MONEY},
        issued_at=row.issued_at,
        due_at=row.due_at,
        paid_at=row.paid_at,
        voided_at=row.voided_at,
        lines=None if lines is None else [line_out(line) for line in lines],
    )


def _visible_invoice(conn: Any, key: ApiKey, invoice_id: int) -> Any:
    row = conn.execute(_base().where(invoices.c.id == invoice_id)).one_or_none()
    if row is None:
        raise NotFoundError("invoice", str(invoice_id))
    visible(key, row.organization_id, "invoice", str(invoice_id))
    return row


@router.get("", responses=READ_PROBLEMS)
def list_invoices(
    request: Request,
    organization: Annotated[str | None, Query(pattern=EXTERNAL_ID)] = None,
    status: STATUSES | None = None,
    issued_from: Annotated[Timestamp | None, Query(description="issued at or after")] = None,
    issued_before: Annotated[Timestamp | None, Query(description="issued before")] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
    starting_after: Annotated[
        int | None, Query(ge=1, le=2**63 - 1, description="the last id of the previous page")
    ] = None,
    key: ApiKey = Depends(allow(*READERS)),
) -> schemas.InvoiceList:
    """Newest first; `has_more` says whether a page follows `starting_after` = last id."""
    scope = scoped_organization(key, organization)
    query = _base().order_by(invoices.c.id.desc()).limit(limit + 1)
    if scope is not None:
        query = query.where(organizations.c.external_id == scope)
    if status is not None:
        query = query.where(invoices.c.status == status)
    if issued_from is not None:
        query = query.where(invoices.c.issued_at >= issued_from)
    if issued_before is not None:
        query = query.where(invoices.c.issued_at < issued_before)
    with reading(request) as conn:
        if scope is not None:
            get_organization(conn, scope)  # an unknown one is not found, not an empty list
        if starting_after is not None:
            cursor = conn.execute(
                sa.select(invoices.c.organization_id).where(invoices.c.id == starting_after)
            ).one_or_none()
            if cursor is None or not (key.sees_all or cursor[0] == key.organization_id):
                raise field_problem("starting_after", f"no invoice {starting_after}")
            query = query.where(invoices.c.id < starting_after)
        rows = conn.execute(query).all()
    return schemas.InvoiceList(data=[out(r) for r in rows[:limit]], has_more=len(rows) > limit)


@router.get("/{invoice_id}", responses=READ_PROBLEMS)
def get_invoice(
    invoice_id: RowId, request: Request, key: ApiKey = Depends(allow(*READERS))
) -> schemas.Invoice:
    """The invoice with its lines."""
    with reading(request) as conn:
        row = _visible_invoice(conn, key, invoice_id)
        lines = conn.execute(
            sa.select(invoice_line_items)
            .where(invoice_line_items.c.invoice_id == invoice_id)
            .order_by(invoice_line_items.c.line_number)
        ).all()
    return out(row, lines)


@router.get(
    "/{invoice_id}/pdf",
    responses={
        200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
        **READ_PROBLEMS,
    },
    response_class=Response,
)
def get_invoice_pdf(
    invoice_id: RowId, request: Request, key: ApiKey = Depends(allow(*READERS))
) -> Response:
    """The PDF as issued (stored at finalization), or rendered now if none was stored."""
    with reading(request) as conn:
        row = _visible_invoice(conn, key, invoice_id)
        if row.number is None:
            raise NotFoundError("invoice document", str(invoice_id))
        stored = Path(row.pdf_path) if row.pdf_path else None
        if stored is not None and stored.is_file():
            data = stored.read_bytes()
        else:
            invoicing = InvoicingResource.from_settings(request.app.state.settings)
            data = render_invoice_number(
                conn, row.number, seller=invoicing.seller, template_dir=invoicing.templates
            )
    return Response(
        data,
        media_type="application/pdf",
        headers={"Content-Disposition": f'inline; filename="{row.number}.pdf"'},
    )


@router.post("/{invoice_id}/void", responses=WRITE_PROBLEMS)
def void(
    invoice_id: RowId,
    body: schemas.InvoiceVoid,
    request: Request,
    key: ApiKey = Depends(allow("admin", "finance")),
) -> schemas.Invoice:
    """Void an open invoice (admin, finance); its consumed credits are returned."""
    with engine(request).begin() as conn:
        row = _visible_invoice(conn, key, invoice_id)
        if row.number is None:
            raise field_problem("invoice_id", "a draft has nothing to void", status=409)
        void_invoice(conn, row.number, reason=body.reason, actor=key.actor, at=datetime.now(UTC))
        return out(_visible_invoice(conn, key, invoice_id))


__all__ = ["MEDIA_TYPE", "router"]
