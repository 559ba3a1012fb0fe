"""Refunds, each documented by a credit note `CN-YYYY-NNNNNN`, and manual payments.

A refund is reserved before Stripe is called: one transaction locks the invoice and the
payment, checks the amount against what is still refundable, numbers the credit note
(gap-free per year, like invoices: the counter moves in the same transaction) and adds
the amount to `payments.amount_refunded`. Stripe is then called with the credit note's
own idempotency key, and a second transaction records the outcome: ledger entry, audit
row, outbox event, PDF. A refund Stripe declines marks its credit note `failed` and
gives the amount back; the number stays used (the document exists, marked failed).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, fields
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine, RowMapping

from dagster_billing.events import catalog
from dagster_billing.events.outbox import write_events
from dagster_billing.invoicing.document import Formatter, Seller, customer_address_lines
from dagster_billing.invoicing.finalize import format_number
from dagster_billing.invoicing.pdf import write_atomically
from dagster_billing.payments import PaymentError
from dagster_billing.payments.attempts import (
    IN_FLIGHT,
    minor_units,
    record_success,
    row_stamp,
    to_minor,
)
from dagster_billing.payments.gateway import (
    GatewayDeclinedError,
    GatewayRejectedError,
    GatewayUnknownError,
    PaymentGateway,
)
from dagster_billing.warehouse import audit
from dagster_billing.warehouse.schema import (
    credit_note_number_counters,
    credit_notes,
    invoices,
    organizations,
    payment_ledger,
    payments,
)

CREDIT_NOTE_PREFIX = "CN-"
TEMPLATE_DIR = Path(__file__).parent / "templates"
PDF_SUBDIR = "credit_notes"


def _locked_invoice(conn: Connection, number: str) -> RowMapping:
    row = (
        conn.execute(sa.select(invoices).where(invoices.c.number == number).with_for_update())
        .mappings()
        .one_or_none()
    )
    if row is None:
        raise PaymentError(f"number: no invoice {number!r}")
    return row


def _amount(value: Decimal | str | None, field: str) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(str(value))
    except ArithmeticError:
        raise PaymentError(f"{field}: not a number, got {value!r}") from None
    if not amount.is_finite() or amount <= 0:
        raise PaymentError(f"{field}: must be > 0, got {value}")
    return amount


def record_manual_payment(
    conn: Connection,
    number: str,
    *,
    reference: str,
    actor: str,
    at: datetime,
    amount: Decimal | str | None = None,
) -> int:
    """A bank transfer or cheque: the invoice is paid in full by `reference` (the text on
    the transfer). Refused while a Stripe attempt is in flight (it may still succeed:
    wait for reconciliation), so the two never both collect. Returns the payment id."""
    if not reference.strip():
        raise PaymentError("reference: a manual payment needs the transfer's reference")
    invoice = _locked_invoice(conn, number)
    if invoice["status"] not in ("open", "uncollectible"):
        raise PaymentError(f"status: invoice {number} is {invoice['status']}, cannot be paid")
    paid = _amount(amount, "amount") or invoice["amount_due"]
    if paid != invoice["amount_due"]:
        raise PaymentError(
            f"amount: {paid} is not the amount due {invoice['amount_due']} (partial manual"
            " payments are not supported)"
        )
    in_flight = conn.scalar(
        sa.select(payments.c.id).where(
            payments.c.invoice_id == invoice["id"], payments.c.status.in_(IN_FLIGHT)
        )
    )
    if in_flight is not None:
        raise PaymentError(
            f"number: invoice {number} has Stripe payment {in_flight} in flight; wait for"
            " reconciliation before recording a manual payment"
        )
    attempt = (
        conn.scalar(
            sa.select(sa.func.max(payments.c.attempt)).where(payments.c.invoice_id == invoice["id"])
        )
        or 0
    ) + 1
    payment_id = conn.execute(
        sa.insert(payments)
        .values(
            invoice_id=invoice["id"],
            attempt=attempt,
            amount=paid,
            currency=invoice["currency"].strip(),
            provider="manual",
            status="succeeded",
            idempotency_key=f"dmb-manual-{invoice['id']}-{attempt}",
            reference=reference.strip(),
            succeeded_at=at,
            created_at=at,
            updated_at=at,
        )
        .returning(payments.c.id)
    ).scalar_one()
    record_success(conn, payment_id, at)
    audit.record(
        conn,
        actor=actor,
        action="invoice.paid_manually",
        entity_type="invoice",
        entity_id=number,
        payload={"payment_id": payment_id, "amount": str(paid), "reference": reference.strip()},
    )
    return payment_id


@dataclass(frozen=True)
class CreditNoteView:
    id: int
    number: str
    invoice_number: str
    payment_id: int
    amount: Decimal
    currency: str
    reason: str
    status: str
    stripe_refund_id: str | None
    pdf_path: str | None


def _allocate_number(conn: Connection, year: int) -> str:
    stmt = insert(credit_note_number_counters).values(
        prefix=CREDIT_NOTE_PREFIX, year=year, last_value=1
    )
    last = conn.execute(
        stmt.on_conflict_do_update(
            index_elements=["prefix", "year"],
            set_={
                "last_value": credit_note_number_counters.c.last_value + 1,
                "updated_at": sa.func.now(),
            },
        ).returning(credit_note_number_counters.c.last_value)
    ).scalar_one()
    return format_number(CREDIT_NOTE_PREFIX, year, last)


def _reserve(
    conn: Connection, number: str, amount: Decimal | None, reason: str, at: datetime
) -> tuple[RowMapping, RowMapping, RowMapping]:
    invoice = _locked_invoice(conn, number)
    candidates = list(
        conn.execute(
            sa.select(payments)
            .where(
                payments.c.invoice_id == invoice["id"],
                payments.c.status.in_(["succeeded", "refunded"]),
            )
            .order_by(payments.c.id.desc())
            .with_for_update()
        ).mappings()
    )
    refundable = sum((p["amount"] - p["amount_refunded"] for p in candidates), Decimal(0))
    if not candidates or refundable <= 0:
        raise PaymentError(f"number: invoice {number} has no payment left to refund")
    wanted = amount if amount is not None else refundable
    payment = next((p for p in candidates if p["amount"] - p["amount_refunded"] >= wanted), None)
    units = minor_units(conn, invoice["currency"].strip())
    if wanted > refundable or payment is None:
        left = refundable.quantize(Decimal(1).scaleb(-units))
        raise PaymentError(f"amount: {wanted} is more than the {left} still refundable on {number}")
    to_minor(wanted, units)  # refuses sub-minor-unit amounts
    credit_number = _allocate_number(conn, at.year)
    note = (
        conn.execute(
            sa.insert(credit_notes)
            .values(
                number=credit_number,
                invoice_id=invoice["id"],
                payment_id=payment["id"],
                amount=wanted,
                currency=invoice["currency"].strip(),
                reason=reason,
                status="pending",
                idempotency_key=f"dmb-credit-note-{credit_number}-{row_stamp(at)}",
                issued_at=at,
            )
            .returning(*credit_notes.c)
        )
        .mappings()
        .one()
    )
    conn.execute(
        sa.update(payments)
        .where(payments.c.id == payment["id"])
        .values(amount_refunded=payments.c.amount_refunded + wanted, updated_at=sa.func.now())
    )
    return invoice, payment, note


def refund_invoice(
    engine: Engine,
    gateway: PaymentGateway | None,
    number: str,
    *,
    reason: str,
    actor: str,
    at: datetime,
    amount: Decimal | str | None = None,
    seller: Seller | None = None,
    data_dir: Path | None = None,
) -> CreditNoteView:
    """Refund `amount` (default: all that is left) of invoice `number`'s payment. A Stripe
    payment is refunded through Stripe; a manual one is recorded (money returned by bank).
    With `seller` and `data_dir`, the credit note's PDF is written and its hash stored."""
    if not reason.strip():
        raise PaymentError("reason: a refund needs a reason")
    wanted = _amount(amount, "amount")
    with engine.begin() as conn:
        _, _, note = _reserve(conn, number, wanted, reason.strip(), at)
    try:
        _complete(engine, gateway, note["id"], actor=actor, at=at, look_up_first=False)
    except GatewayUnknownError:
        raise PaymentError(
            f"refund: Stripe did not answer; credit note {note['number']} stays pending and"
            " the stripe_reconciliation sensor completes it"
        ) from None
    if seller is not None and data_dir is not None:
        with engine.begin() as conn:
            store_credit_note_pdf(conn, note["id"], seller=seller, data_dir=data_dir)
    with engine.connect() as conn:
        return get_credit_note(conn, note["number"])


def _complete(
    engine: Engine,
    gateway: PaymentGateway | None,
    credit_note_id: int,
    *,
    actor: str,
    at: datetime,
    look_up_first: bool,
) -> str:
    """Carry a pending credit note's refund out at Stripe and record it. Resuming one whose
    outcome is unknown looks the refund up first (by our metadata) and only then POSTs,
    with the same key: never a second refund."""
    with engine.connect() as conn:
        note = (
            conn.execute(sa.select(credit_notes).where(credit_notes.c.id == credit_note_id))
            .mappings()
            .one()
        )
        payment = (
            conn.execute(sa.select(payments).where(payments.c.id == note["payment_id"]))
            .mappings()
            .one()
        )
        invoice = (
            conn.execute(sa.select(invoices).where(invoices.c.id == note["invoice_id"]))
            .mappings()
            .one()
        )
        units = minor_units(conn, note["currency"].strip())
    if note["status"] != "pending":
        return note["status"]
    refund_id = None
    if payment["provider"] == "stripe":
        if gateway is None:
            with engine.begin() as conn:
                _fail(conn, note, payment, "no Stripe gateway")
            raise PaymentError("STRIPE_API_KEY: a Stripe payment can only be refunded via Stripe")
        intent_id = str(payment["stripe_payment_intent_id"])
        found = (
            gateway.find_refunds(
                payment_intent=intent_id,
                metadata_key="dmb_credit_note",
                metadata_value=note["number"],
            )
            if look_up_first
            else []
        )
        try:
            refund = (
                found[0]
                if found
                else gateway.create_refund(
                    payment_intent=intent_id,
                    amount=to_minor(note["amount"], units),
                    metadata={
                        "dmb_credit_note": note["number"],
                        "dmb_invoice_number": invoice["number"],
                    },
                    idempotency_key=note["idempotency_key"],
                )
            )
        except (GatewayDeclinedError, GatewayRejectedError) as exc:
            with engine.begin() as conn:
                _fail(conn, note, payment, str(exc))
            raise PaymentError(
                f"refund: Stripe refused the refund of {invoice['number']}: {exc}"
            ) from None
        refund_id = refund.id
    with engine.begin() as conn:
        _succeed(conn, note, invoice, payment, refund_id, actor, at)
    return "succeeded"


# Older than the Stripe timeout with its retries: no refund call is still waiting on it.
STALE_REFUND = timedelta(minutes=2)


def resume_pending_refunds(
    engine: Engine,
    gateway: PaymentGateway,
    *,
    now: datetime,
    seller: Seller | None = None,
    data_dir: Path | None = None,
) -> int:
    """Complete credit notes left pending by a refund whose Stripe call had no answer (or
    whose process died); returns how many were completed or failed."""
    with engine.connect() as conn:
        pending = list(
            conn.scalars(
                sa.select(credit_notes.c.id)
                .where(
                    credit_notes.c.status == "pending",
                    credit_notes.c.issued_at <= now - STALE_REFUND,
                )
                .order_by(credit_notes.c.id)
            )
        )
    done = 0
    for credit_note_id in pending:
        try:
            _complete(
                engine, gateway, credit_note_id, actor="reconciliation", at=now, look_up_first=True
            )
        except GatewayUnknownError:
            continue
        except PaymentError:
            done += 1
            continue
        done += 1
        if seller is not None and data_dir is not None:
            with engine.begin() as conn:
                store_credit_note_pdf(conn, credit_note_id, seller=seller, data_dir=data_dir)
    return done


def _fail(conn: Connection, note: RowMapping, payment: RowMapping, error: str) -> None:
    conn.execute(
        sa.update(credit_notes)
        .where(credit_notes.c.id == note["id"])
        .values(status="failed", updated_at=sa.func.now())
    )
    conn.execute(
        sa.update(payments)
        .where(payments.c.id == payment["id"])
        .values(amount_refunded=payments.c.amount_refunded - note["amount"])
    )


def _succeed(
    conn: Connection,
    note: RowMapping,
    invoice: RowMapping,
    payment: RowMapping,
    refund_id: str | None,
    actor: str,
    at: datetime,
) -> None:
    conn.execute(
        sa.update(credit_notes)
        .where(credit_notes.c.id == note["id"])
        .values(status="succeeded", stripe_refund_id=refund_id, updated_at=sa.func.now())
    )
    conn.execute(
        sa.update(payments)
        .where(payments.c.id == payment["id"], payments.c.amount_refunded >= payments.c.amount)
        .values(status="refunded")
    )
    conn.execute(
        insert(payment_ledger)
        .values(
            organization_id=invoice["organization_id"],
            invoice_id=invoice["id"],
            payment_id=payment["id"],
            credit_note_id=note["id"],
            entry_type="refund",
            amount=-note["amount"],
            currency=note["currency"],
            occurred_at=at,
        )
        .on_conflict_do_nothing()
    )
    payload = {
        "credit_note": note["number"],
        "invoice_number": invoice["number"],
        "payment_id": payment["id"],
        "amount": str(note["amount"]),
        "currency": note["currency"].strip(),
        "reason": note["reason"],
    }
    audit.record(
        conn,
        actor=actor,
        action="invoice.refunded",
        entity_type="invoice",
        entity_id=invoice["number"],
        payload={**payload, "stripe_refund_id": refund_id},
    )
    write_events(
        conn,
        [
            catalog.payment_refunded(
                payment_id=payment["id"],
                credit_note=note["number"],
                invoice_id=invoice["id"],
                invoice_number=invoice["number"],
                organization_id=invoice["organization_id"],
                amount=note["amount"],
                currency=note["currency"].strip(),
                reason=note["reason"],
                refunded_at=at,
            )
        ],
    )


def get_credit_note(conn: Connection, number: str) -> CreditNoteView:
    row = (
        conn.execute(
            sa.select(credit_notes, invoices.c.number.label("invoice_number"))
            .join(invoices, invoices.c.id == credit_notes.c.invoice_id)
            .where(credit_notes.c.number == number)
        )
        .mappings()
        .one_or_none()
    )
    if row is None:
        raise PaymentError(f"number: no credit note {number!r}")
    values = {f.name: row[f.name] for f in fields(CreditNoteView)}
    return CreditNoteView(**{**values, "currency": values["currency"].strip()})


def list_credit_notes(conn: Connection, invoice_number: str) -> list[CreditNoteView]:
    numbers = conn.scalars(
        sa.select(credit_notes.c.number)
        .join(invoices, invoices.c.id == credit_notes.c.invoice_id)
        .where(invoices.c.number == invoice_number)
        .order_by(credit_notes.c.id)
    ).all()
    return [get_credit_note(conn, n) for n in numbers]


def credit_note_context(conn: Connection, credit_note_id: int, seller: Seller) -> dict[str, Any]:
    """What the credit note says, formatted like the invoice it corrects."""
    row = (
        conn.execute(
            sa.select(
                credit_notes,
                invoices.c.number.label("invoice_number"),
                invoices.c.issued_at.label("invoice_issued_at"),
                invoices.c.total.label("invoice_total"),
                organizations.c.name.label("org_name"),
                organizations.c.email.label("org_email"),
                organizations.c.external_id.label("org_external_id"),
                organizations.c.locale,
                organizations.c.billing_address,
                payments.c.provider,
            )
            .join(invoices, invoices.c.id == credit_notes.c.invoice_id)
            .join(organizations, organizations.c.id == invoices.c.organization_id)
            .join(payments, payments.c.id == credit_notes.c.payment_id)
            .where(credit_notes.c.id == credit_note_id)
        )
        .mappings()
        .one()
    )
    before = conn.scalar(
        sa.select(sa.func.coalesce(sa.func.sum(credit_notes.c.amount), 0)).where(
            credit_notes.c.invoice_id == row["invoice_id"],
            credit_notes.c.status == "succeeded",
            credit_notes.c.id < credit_note_id,
        )
    )
    fmt = Formatter(row["currency"].strip(), row["locale"])
    return {
        "number": row["number"],
        "lang": fmt.locale.language,
        "created": row["issued_at"].isoformat(),
        "stamp": "Failed" if row["status"] == "failed" else "",
        "seller": {"name": seller.name, "address": seller.address_lines, "tax_id": seller.tax_id},
        "customer": {
            "name": row["org_name"],
            "email": row["org_email"] or "",
            "account": row["org_external_id"],
            "address": customer_address_lines(row["billing_address"] or {}),
        },
        "issue_date": fmt.date(row["issued_at"]),
        "invoice_number": row["invoice_number"],
        "invoice_date": fmt.date(row["invoice_issued_at"]),
        "currency": row["currency"].strip(),
        "amount": fmt.money(row["amount"]),
        "invoice_total": fmt.money(row["invoice_total"]),
        "refunded_before": fmt.money(before),
        "reason": row["reason"],
        "method": "card via Stripe" if row["provider"] == "stripe" else "bank transfer",
    }


def render_credit_note_pdf(context: dict[str, Any]) -> bytes:
    """The invoice's stylesheet and fonts, the credit note's own template; deterministic."""
    from dagster_billing.invoicing.pdf import (
        DEFAULT_TEMPLATE_DIR,
        html_to_pdf,
        template_environment,
    )

    html = (
        template_environment(str(TEMPLATE_DIR)).get_template("credit_note.html").render(**context)
    )
    return html_to_pdf(html, context["number"], TEMPLATE_DIR, DEFAULT_TEMPLATE_DIR)


def store_credit_note_pdf(
    conn: Connection, credit_note_id: int, *, seller: Seller, data_dir: Path
) -> Path:
    context = credit_note_context(conn, credit_note_id, seller)
    data = render_credit_note_pdf(context)
    path = data_dir / PDF_SUBDIR / f"{context['number']}.pdf"
    write_atomically(path, data)
    conn.execute(
        sa.update(credit_notes)
        .where(credit_notes.c.id == credit_note_id)
        .values(pdf_path=str(path), pdf_sha256=hashlib.sha256(data).hexdigest())
    )
    return path
