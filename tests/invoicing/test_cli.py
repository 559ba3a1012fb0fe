"""`billing invoice preview | pdf | void`, run as a user runs them."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

from sqlalchemy.engine import Engine

from dagster_billing.invoicing.document import Seller
from dagster_billing.invoicing.pdf import render_invoice_number
from dagster_billing.settings import load_settings
from dagster_billing.warehouse.database import Warehouse
from tests.invoicing.conftest import Billing, Line, day
from tests.test_cli import billing as run


def test_preview_shows_the_next_draft_formatted_for_the_customer(
    billing: Billing, warehouse: Warehouse
) -> None:
    customer = billing.customer(currency="EUR", locale="de_DE")
    billing.draft(customer, day(3, 1), [Line("Starter (monthly)", Decimal("45.00"))])
    billing.finalize(day(3, 1), prefix="CLI-")
    billing.draft(
        customer,
        day(4, 1),
        [Line("Starter (monthly)", Decimal("1234.50"), unit_amount=Decimal("1234.5"))],
        tax_rate="0.19",
        sequence=2,
    )
    result = run("invoice", "preview", customer.organization_external_id, dsn=warehouse.libpq_url())
    assert result.returncode == 0, result.stderr
    assert "01.04.2026" in result.stdout  # the finalized March draft is not upcoming
    assert "1.234,50\xa0€" in result.stdout
    assert "1.469,06\xa0€" in result.stdout  # + 19 % tax
    missing = run("invoice", "preview", "nobody", dsn=warehouse.libpq_url())
    assert missing.returncode == 1
    assert "no upcoming invoice" in missing.stderr


def test_pdf_writes_the_stored_document_and_void_needs_a_known_number(
    billing: Billing, engine: Engine, warehouse: Warehouse, tmp_path: Path
) -> None:
    key = billing.draft(billing.customer(), day(3, 2), [Line("Fee", Decimal("10.00"))])
    billing.finalize(day(3, 2), prefix="CLP-")
    number = billing.invoice(key)["number"]
    output = tmp_path / "out.pdf"
    result = run("invoice", "pdf", number, "-o", str(output), dsn=warehouse.libpq_url())
    assert result.returncode == 0, result.stderr
    settings = load_settings()
    seller = Seller(
        settings.invoice_seller_name,
        settings.invoice_seller_address,
        settings.invoice_seller_tax_id,
        settings.invoice_payment_instructions,
    )
    with engine.connect() as conn:
        assert output.read_bytes() == render_invoice_number(conn, number, seller=seller)

    unknown = run("invoice", "void", "CLP-1999-000001", "--reason", "x", dsn=warehouse.libpq_url())
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == "error: number: no invoice 'CLP-1999-000001'"
    voided = run(
        "invoice",
        "void",
        number,
        "--reason",
        "Customer churned before service",
        dsn=warehouse.libpq_url(),
    )
    assert voided.returncode == 0, voided.stderr
    assert billing.invoice(key)["status"] == "void"
