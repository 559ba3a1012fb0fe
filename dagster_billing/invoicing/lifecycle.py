"""After finalization: void (with credits returned), overdue marking, payment.

Each function runs in the caller's transaction and locks the invoice row it changes, so
a payment webhook and a void racing on one invoice serialize, and the loser sees the
winner's status.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection, RowMapping

from dagster_billing.events import catalog
from dagster_billing.events.outbox import write_events
from dagster_billing.invoicing import InvoicingError
from dagster_billing.warehouse import audit
from dagster_billing.warehouse.schema import credits, invoices


def _locked(conn: Connection, number: str) -> RowMapping:
    row = (
        conn.execute(sa.select(invoices).where(invoices.c.number == number).with_for_update())
        .mappings()
        .one_or_none()
    )
    if row is None:
        raise InvoicingError(f"number: no invoice {number!r}")
    return row


@dataclass(frozen=True)
class VoidResult:
    number: str
    credits_returned: int


def void_invoice(
    conn: Connection, number: str, *, reason: str, actor: str, at: datetime
) -> VoidResult:
    """Void an open (or uncollectible) invoice: audit it and reverse its credit applications."""
    if not reason.strip():
        raise InvoicingError("reason: voiding an invoice needs a reason")
    invoice = _locked(conn, number)
    if invoice["status"] not in ("open", "uncollectible"):
        raise InvoicingError(f"status: invoice {number} is {invoice['status']}, cannot be voided")
    conn.execute(
        sa.update(invoices)
        .where(invoices.c.id == invoice["id"])
        .values(status="void", voided_at=at, void_reason=reason, updated_at=sa.func.now())
    )
    applications = conn.execute(
        sa.select(credits).where(
            credits.c.invoice_id == invoice["id"], credits.c.entry_type == "application"
        )
    ).mappings()
    reversals = [
        {
            "organization_id": row["organization_id"],
            "entry_type": "reversal",
            "credit_type": row["credit_type"],
            "grant_id": row["grant_id"],
            "invoice_id": row["invoice_id"],
            "amount": -row["amount"],
            "currency": row["currency"],
            "description": f"Returned from voided invoice {number}",
        }
        for row in applications
    ]
    if reversals:
        conn.execute(sa.insert(credits), reversals)
    write_events(
        conn,
        [
            catalog.invoice_voided(
                invoice_id=invoice["id"],
                number=number,
                organization_id=invoice["organization_id"],
                previous_status=invoice["status"],
                reason=reason,
                voided_at=at,
                amount_due=invoice["amount_due"],
                currency=invoice["currency"].strip(),
                credits_returned=sum((r["amount"] for r in reversals), Decimal(0)),
            )
        ],
    )
    audit.record(
        conn,
        actor=actor,
        action="invoice.voided",
        entity_type="invoice",
        entity_id=number,
        payload={
            "invoice_id": invoice["id"],
            "previous_status": invoice["status"],
            "reason": reason,
            "amount_due": str(invoice["amount_due"]),
            "credits_returned": [str(r["amount"]) for r in reversals],
        },
    )
    return VoidResult(number, len(reversals))


def mark_paid(conn: Connection, number: str, *, at: datetime) -> bool:
    """Record a payment; False when the invoice was already paid (a redelivered webhook).
    One guarded update in the common case (a charge's success path runs it)."""
    paid = conn.execute(
        sa.update(invoices)
        .where(invoices.c.number == number, invoices.c.status.in_(("open", "uncollectible")))
        .values(status="paid", paid_at=at, updated_at=sa.func.now())
        .returning(invoices.c.id, invoices.c.organization_id, invoices.c.currency, invoices.c.total)
    ).one_or_none()
    if paid is None:
        status = _locked(conn, number)["status"]
        if status == "paid":
            return False
        raise InvoicingError(f"status: invoice {number} is {status}, cannot be paid")
    event = catalog.invoice_paid(
        invoice_id=paid.id,
        number=number,
        organization_id=paid.organization_id,
        currency=paid.currency.strip(),
        total=paid.total,
        paid_at=at,
    )
    write_events(conn, [event])
    return True


def mark_uncollectible(
    conn: Connection, number: str, *, reason: str, actor: str, at: datetime
) -> None:
    """Write off an open invoice (dunning gave up); it can still be paid or voided later."""
    if not reason.strip():
        raise InvoicingError("reason: marking an invoice uncollectible needs a reason")
    invoice = _locked(conn, number)
    if invoice["status"] != "open":
        raise InvoicingError(
            f"status: invoice {number} is {invoice['status']}, cannot become uncollectible"
        )
    conn.execute(
        sa.update(invoices)
        .where(invoices.c.id == invoice["id"])
        .values(status="uncollectible", updated_at=sa.func.now())
    )
    audit.record(
        conn,
        actor=actor,
        action="invoice.uncollectible",
        entity_type="invoice",
        entity_id=number,
        payload={
            "invoice_id": invoice["id"],
            "reason": reason,
            "amount_due": str(invoice["amount_due"]),
            "at": at.isoformat(),
        },
    )


def mark_overdue(conn: Connection, as_of: datetime) -> list[str]:
    """Flag open invoices past due at `as_of` (once each) and write `billing.invoice.overdue`."""
    rows = conn.execute(
        sa.update(invoices)
        .where(
            invoices.c.status == "open",
            invoices.c.overdue_at.is_(None),
            invoices.c.due_at < as_of,
        )
        .values(overdue_at=as_of, updated_at=sa.func.now())
        .returning(
            invoices.c.id,
            invoices.c.number,
            invoices.c.organization_id,
            invoices.c.due_at,
            invoices.c.amount_due,
            invoices.c.currency,
        )
    ).all()
    write_events(
        conn,
        [
            catalog.invoice_overdue(
                invoice_id=row.id,
                number=row.number,
                organization_id=row.organization_id,
                due_at=row.due_at,
                amount_due=row.amount_due,
                currency=row.currency.strip(),
                as_of=as_of,
            )
            for row in rows
        ],
    )
    return sorted(row.number for row in rows)
