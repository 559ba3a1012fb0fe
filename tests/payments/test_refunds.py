"""Refunds with credit notes (CN-YYYY-NNNNNN, PDF), never more than was paid; manual
payments by bank transfer."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import jsonschema
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.events import catalog
from dagster_billing.invoicing.document import Seller
from dagster_billing.payments import PaymentError
from dagster_billing.payments.charging import charge_invoice
from dagster_billing.payments.checks import invoices_paid_twice, paid_invoices_without_payment
from dagster_billing.payments.refunds import record_manual_payment, refund_invoice
from tests.payments.conftest import invoice_status, payment_rows

AT = datetime(2031, 4, 2, 12, tzinfo=UTC)
SELLER = Seller("DictaMesh Inc.", "100 Mesh Street; San Francisco", "", "")


def _refunds_in_stripe(stripe_client, intent_id: str) -> list[int]:
    page = stripe_client.v1.refunds.list({"payment_intent": intent_id, "limit": 100})
    return sorted(r.amount for r in page.data)


def test_partial_refunds_never_exceed_what_was_paid(
    engine: Engine, gateway, open_invoice, stripe_client, tmp_path: Path
) -> None:
    invoice = open_invoice(gateway=gateway, amount="100.00")
    charge_invoice(engine, gateway, invoice.id, now=AT)

    first = refund_invoice(
        engine,
        gateway,
        invoice.number,
        amount="30.00",
        reason="Downtime credit",
        actor="finance",
        at=AT,
        seller=SELLER,
        data_dir=tmp_path,
    )
    with pytest.raises(PaymentError, match=r"amount: 70\.01 is more than the 70\.00 still"):
        refund_invoice(
            engine, gateway, invoice.number, amount="70.01", reason="x", actor="f", at=AT
        )
    second = refund_invoice(
        engine,
        gateway,
        invoice.number,
        amount="70.00",
        reason="Cancelled",
        actor="finance",
        at=AT,
    )
    with pytest.raises(PaymentError, match="no payment left to refund"):
        refund_invoice(engine, gateway, invoice.number, amount="0.01", reason="x", actor="f", at=AT)

    assert (first.amount, first.status) == (Decimal("30.00"), "succeeded")
    assert first.number.startswith("CN-2031-") and len(first.number) == len("CN-2031-000001")
    assert int(second.number[-6:]) == int(first.number[-6:]) + 1
    (row,) = payment_rows(engine, invoice.id)
    assert (row["status"], row["amount_refunded"]) == ("refunded", Decimal("100.00"))
    assert _refunds_in_stripe(stripe_client, str(row["stripe_payment_intent_id"])) == [3000, 7000]
    pdf = Path(str(first.pdf_path))
    assert pdf.read_bytes().startswith(b"%PDF")
    with engine.connect() as conn:
        ledger = conn.execute(
            sa.text(
                "select entry_type, amount from dictamesh_billing_payment_ledger"
                " where invoice_id = :i order by id"
            ),
            {"i": invoice.id},
        ).all()
        audited = conn.scalar(
            sa.text(
                "select count(*) from dictamesh_billing_audit_log"
                " where action = 'invoice.refunded' and entity_id = :n"
            ),
            {"n": invoice.number},
        )
        refunded = conn.scalars(
            sa.text(
                "select payload from dictamesh_billing_outbox"
                " where event_type = 'billing.payment.refunded' order by id"
            )
        ).all()
    assert ledger == [
        ("payment", Decimal("100.00")),
        ("refund", Decimal("-30.00")),
        ("refund", Decimal("-70.00")),
    ]
    assert audited == 2
    assert [(e["credit_note"], Decimal(e["amount"])) for e in refunded] == [
        (first.number, Decimal("30.00")),
        (second.number, Decimal("70.00")),
    ]
    for payload in refunded:
        assert (payload["payment_id"], payload["invoice_id"]) == (row["id"], invoice.id)
        assert isinstance(payload["organization_id"], int)  # the Kafka key's source
        jsonschema.validate(payload, catalog.load_schema("billing.payment.refunded"))


def test_an_unpaid_invoice_cannot_be_refunded(engine: Engine, gateway, open_invoice) -> None:
    invoice = open_invoice(None)
    with pytest.raises(PaymentError, match="no payment left to refund"):
        refund_invoice(engine, gateway, invoice.number, reason="x", actor="f", at=AT)


def test_a_manual_payment_pays_the_invoice_and_can_be_refunded(
    engine: Engine, gateway, open_invoice
) -> None:
    invoice = open_invoice(None, amount="250.00")
    with engine.begin() as conn:
        record_manual_payment(conn, invoice.number, reference="BANK-REF-778", actor="ops", at=AT)

    assert invoice_status(engine, invoice.id) == "paid"
    (row,) = payment_rows(engine, invoice.id)
    assert (row["provider"], row["reference"], row["amount"]) == (
        "manual",
        "BANK-REF-778",
        Decimal("250.00"),
    )
    with engine.begin() as conn, pytest.raises(PaymentError, match="is paid, cannot be paid"):
        record_manual_payment(conn, invoice.number, reference="again", actor="ops", at=AT)
    note = refund_invoice(
        engine, None, invoice.number, amount="50", reason="Goodwill", actor="ops", at=AT
    )
    assert (note.status, note.stripe_refund_id) == ("succeeded", None)
    with engine.connect() as conn:
        assert invoice.number not in " ".join(invoices_paid_twice(conn))
        assert invoice.number not in paid_invoices_without_payment(conn)


def test_a_manual_payment_waits_for_an_attempt_in_flight(
    engine: Engine, gateway, open_invoice, proxy
) -> None:
    invoice = open_invoice(gateway=gateway)
    for _ in range(3):
        proxy.fail_next("500", "/v1/payment_intents")
    assert charge_invoice(engine, gateway, invoice.id, now=AT).status == "unknown"
    with engine.begin() as conn, pytest.raises(PaymentError, match="in flight"):
        record_manual_payment(conn, invoice.number, reference="REF", actor="ops", at=AT)


def test_the_checks_find_a_double_payment_and_a_paid_invoice_without_one(
    engine: Engine, gateway, open_invoice
) -> None:
    invoice = open_invoice(gateway=gateway)
    charge_invoice(engine, gateway, invoice.id, now=AT)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_payments (invoice_id, attempt, amount, currency,"
                " provider, status, idempotency_key, reference) values (:i, 9, 100, 'USD',"
                " 'manual', 'succeeded', :k, 'dup')"
            ),
            {"i": invoice.id, "k": f"dup-{invoice.id}"},
        )
    unpaid = open_invoice(None)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "update dictamesh_billing_invoices set status = 'paid', paid_at = now()"
                " where id = :i"
            ),
            {"i": unpaid.id},
        )
    with engine.connect() as conn:
        assert f"{invoice.number}: 2 payments" in invoices_paid_twice(conn)
        assert unpaid.number in paid_invoices_without_payment(conn)
