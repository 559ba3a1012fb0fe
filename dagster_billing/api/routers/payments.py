"""Payments, payment methods and refunds: thin routes over dagster_billing.payments.

Each route authenticates, checks the caller may see the object (another organization's
id answers 404 as a missing one does), and only then reaches Stripe. Stripe is called
only with STRIPE_ENABLED (503 otherwise). A decline is a 402 problem carrying Stripe's
`failure_code`; an answer Stripe did not give is a 502 (the attempt is then settled by
the reconciliation sensor, never charged again blindly).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Request
from sqlalchemy.engine import Connection

from dagster_billing.api import schemas
from dagster_billing.api.keys import ApiKey
from dagster_billing.api.problems import Problem, field_problem, message_problem, problem_responses
from dagster_billing.api.routers.common import (
    READ_PROBLEMS,
    WRITE_PROBLEMS,
    RowId,
    engine,
    reading,
    text,
)
from dagster_billing.api.security import allow, visible
from dagster_billing.customers import NotFoundError, get_organization
from dagster_billing.payments import PaymentError
from dagster_billing.payments.attempts import PaymentView, get_payment
from dagster_billing.payments.charging import charge_invoice
from dagster_billing.payments.customers import add_payment_method, refuse_card_numbers
from dagster_billing.payments.gateway import (
    GatewayDeclinedError,
    GatewayRejectedError,
    GatewayUnknownError,
    PaymentGateway,
)
from dagster_billing.payments.refunds import refund_invoice
from dagster_billing.settings import Settings
from dagster_billing.warehouse.schema import invoices, organizations, payment_methods, payments

router = APIRouter(tags=["payments"])
STRIPE_PROBLEMS = problem_responses(402, 502, 503)
PROBLEMS = {**WRITE_PROBLEMS, **STRIPE_PROBLEMS}

NOT_CONFIGURED = (
    "STRIPE_ENABLED: Stripe payments are not enabled on this server"
    " (set STRIPE_ENABLED=true and STRIPE_API_KEY)"
)
NO_ANSWER = (
    "Stripe did not answer; nothing is charged twice: the outcome is looked up by the"
    " stripe_reconciliation sensor. Retry later."
)


async def no_card_numbers(request: Request) -> None:
    """Refuse, before any field is validated, stored or logged, a body carrying anything
    that looks like a card number (the problem names the field, never the digits)."""
    raw = await request.body()
    if not raw:
        return
    try:
        body = json.loads(raw)
    except ValueError:
        return  # FastAPI answers malformed JSON itself
    try:
        refuse_card_numbers(body)
    except PaymentError as exc:
        raise message_problem(str(exc)) from None


def _gateway(request: Request) -> PaymentGateway:
    """The Stripe gateway from settings; 503 naming the setting when Stripe is off."""
    settings: Settings = request.app.state.settings
    if not settings.stripe_enabled or settings.stripe_api_key is None:
        raise Problem(503, NOT_CONFIGURED)
    from dagster_billing.resources.stripe import gateway_from_settings  # needs `stripe`

    return gateway_from_settings(settings)


@contextmanager
def _stripe_errors(field: str) -> Iterator[None]:
    """Gateway errors a route lets through, as problem documents."""
    try:
        yield
    except GatewayDeclinedError as exc:
        raise Problem(
            402,
            f"{field}: declined by Stripe ({exc.code}): {exc.message}",
            errors=[{"field": field, "detail": f"declined ({exc.code})"}],
            failure_code=exc.code or "card_declined",
            decline_code=exc.decline_code,
        ) from None
    except GatewayRejectedError as exc:
        raise field_problem(field, str(exc)) from None
    except GatewayUnknownError:
        raise Problem(502, NO_ANSWER) from None


def _payment_out(view: PaymentView) -> schemas.Payment:
    values: dict[str, Any] = asdict(view)
    values["invoice"] = values.pop("invoice_id")
    for money in ("amount", "amount_refunded"):
        values[money] = text(values[money])
    return schemas.Payment(**values)


def _invoice_org(request: Request, invoice_id: int) -> int:
    with reading(request) as conn:
        found = conn.scalar(
            sa.select(invoices.c.organization_id).where(invoices.c.id == invoice_id)
        )
    if found is None:
        raise NotFoundError("invoice", str(invoice_id))
    return found


def _not_chargeable(conn: Connection, invoice_id: int) -> str | None:
    """Why the invoice cannot be charged now, or None."""
    invoice = conn.execute(
        sa.select(invoices.c.number, invoices.c.status, invoices.c.amount_due).where(
            invoices.c.id == invoice_id
        )
    ).one()
    if invoice.status != "open":
        return f"invoice {invoice.number or invoice_id} is {invoice.status}, not open"
    if invoice.amount_due <= 0:
        return f"invoice {invoice.number} has nothing due"
    method = conn.scalar(
        sa.select(payment_methods.c.id)
        .join(invoices, invoices.c.organization_id == payment_methods.c.organization_id)
        .join(organizations, organizations.c.id == invoices.c.organization_id)
        .where(
            invoices.c.id == invoice_id,
            payment_methods.c.is_default,
            organizations.c.stripe_customer_id.is_not(None),
        )
    )
    if method is None:
        return "the organization has no default payment method: add one with POST /payment-methods"
    return None


@router.post("/payments", status_code=201, responses=PROBLEMS)
def create_payment(
    body: schemas.PaymentCreate,
    request: Request,
    key: ApiKey = Depends(allow("admin", "finance", "org_member")),
    _: None = Depends(no_card_numbers),
) -> schemas.Payment:
    """Pay an open invoice now: its amount due, charged off-session to the organization's
    default payment method. `status` `succeeded` (the invoice is paid), or `processing`
    or `unknown` (settled later by reconciliation: GET the payment). A decline is a 402
    problem with Stripe's `failure_code` (dunning retries it on PAYMENT_RETRY_SCHEDULE)."""
    visible(key, _invoice_org(request, body.invoice), "invoice", str(body.invoice))
    gateway = _gateway(request)
    with reading(request) as conn:
        why = _not_chargeable(conn, body.invoice)
    if why is not None:
        raise field_problem("invoice", why, status=409)
    settings: Settings = request.app.state.settings
    outcome = charge_invoice(
        engine(request),
        gateway,
        body.invoice,
        now=datetime.now(UTC),
        retry_days=settings.payment_retry_days,
    )
    if outcome.payment_id is None:
        raise field_problem(
            "invoice", "a payment of this invoice is in flight or it was paid meanwhile", 409
        )
    with reading(request) as conn:
        view = get_payment(conn, outcome.payment_id)
    if outcome.status == "failed" and outcome.failure_code == "rejected":
        raise Problem(502, f"Stripe rejected the charge: {view.failure_message}", payment=view.id)
    if outcome.status == "failed":
        raise Problem(
            402,
            f"invoice: the charge was declined ({view.failure_code})"
            + (f": {view.failure_message}" if view.failure_message else ""),
            errors=[{"field": "invoice", "detail": f"declined ({view.failure_code})"}],
            failure_code=view.failure_code,
            decline_code=view.decline_code,
            payment=view.id,
        )
    return _payment_out(view)


@router.get("/payments/{payment_id}", responses=READ_PROBLEMS)
def read_payment(
    payment_id: RowId,
    request: Request,
    key: ApiKey = Depends(allow("admin", "finance", "org_member")),
) -> schemas.Payment:
    """One payment attempt (or manual payment) with its status and failure codes."""
    with reading(request) as conn:
        found = conn.scalar(
            sa.select(invoices.c.organization_id)
            .join(payments, payments.c.invoice_id == invoices.c.id)
            .where(payments.c.id == payment_id)
        )
        if found is None:
            raise NotFoundError("payment", str(payment_id))
        visible(key, found, "payment", str(payment_id))
        return _payment_out(get_payment(conn, payment_id))


@router.post("/payments/{payment_id}/refund", status_code=201, responses=PROBLEMS)
def refund_payment(
    payment_id: RowId,
    body: schemas.RefundCreate,
    request: Request,
    key: ApiKey = Depends(allow("admin", "finance")),
    _: None = Depends(no_card_numbers),
) -> schemas.CreditNote:
    """Refund a payment, whole or in part (admin, finance), documented by a credit note
    `CN-YYYY-NNNNNN` (with its PDF). The refund is taken from the payment's invoice: with
    the usual one succeeded payment per invoice, that is this payment."""
    with reading(request) as conn:
        found = conn.execute(
            sa.select(
                payments.c.status,
                payments.c.provider,
                payments.c.amount,
                payments.c.amount_refunded,
                invoices.c.number,
            )
            .join(invoices, invoices.c.id == payments.c.invoice_id)
            .where(payments.c.id == payment_id)
        ).one_or_none()
    if found is None:
        raise NotFoundError("payment", str(payment_id))
    if found.status not in ("succeeded", "refunded"):
        raise field_problem("payment_id", f"payment is {found.status}, nothing to refund", 409)
    if found.amount - found.amount_refunded <= 0:
        raise field_problem("payment_id", "payment is refunded in full already", 409)
    gateway = _gateway(request) if found.provider == "stripe" else None
    from dagster_billing.resources import InvoicingResource

    invoicing = InvoicingResource.from_settings(request.app.state.settings)
    try:
        note = refund_invoice(
            engine(request),
            gateway,
            found.number,
            reason=body.reason,
            actor=key.actor,
            at=datetime.now(UTC),
            amount=body.amount,
            seller=invoicing.seller,
            data_dir=Path(invoicing.data_dir),
        )
    except PaymentError as exc:
        # `refund: ...`: Stripe refused it or did not answer (the credit note says which)
        raise message_problem(str(exc), 502 if str(exc).startswith("refund:") else 422) from None
    return schemas.CreditNote(
        **{**asdict(note), "payment": note.payment_id, "amount": text(note.amount)}
    )


@router.post("/payment-methods", status_code=201, responses=PROBLEMS)
def create_payment_method(
    body: schemas.PaymentMethodCreate,
    request: Request,
    key: ApiKey = Depends(allow("admin", "org_member")),
    _: None = Depends(no_card_numbers),
) -> schemas.PaymentMethod:
    """Attach a Stripe PaymentMethod (its id only; card data never reaches this API) to the
    organization's Stripe customer (created on first use); it becomes the default."""
    with reading(request) as conn:
        org = get_organization(conn, body.organization)
    visible(key, org["id"], "organization", body.organization)
    gateway = _gateway(request)
    with _stripe_errors("stripe_payment_method_id"):
        record = add_payment_method(
            engine(request),
            gateway,
            org["id"],
            payment_method_id=body.stripe_payment_method_id,
            make_default=True,
        )
    # the record's organization_id is the internal one; callers know the external id
    return schemas.PaymentMethod(**{**asdict(record), "organization": body.organization})
