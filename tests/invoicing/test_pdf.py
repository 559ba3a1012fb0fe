"""Invoice PDFs: what the customer reads, formatted for their locale, stable to the byte."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.invoicing.document import Formatter, Seller, load_documents
from dagster_billing.invoicing.pdf import (
    DEFAULT_TEMPLATE_DIR,
    missing_pdfs,
    render_invoice_number,
    render_pdf,
    store_pdfs,
)
from tests.invoicing.conftest import Billing, Line, day

D = Decimal
SELLER = Seller(
    name="DictaMesh Inc.",
    address="100 Mesh Street; San Francisco, CA 94105; United States",
    tax_id="US12-3456789",
    payment_instructions="Bank transfer to DictaMesh Inc., IBAN US00 0000 0000 0000.",
)


def demo_lines() -> list[Line]:
    """A Starter month like the demo's Acme: fee, seats, tiered overage, an adjustment."""
    return [
        Line("Starter (monthly)", D("49.00"), unit_amount=D("49.00")),
        Line("Extra seats", D("30.00"), kind="seats", quantity=D(3), unit_amount=D("10.00")),
        Line(
            "API calls overage",
            D("1234.56"),
            kind="overage",
            quantity=D("4938.24"),
            metric="api_calls",
            tier_detail=(
                {"tier": 1, "quantity": "4000", "unit_amount": "0.250000", "amount": "1000.00"},
                {"tier": 2, "quantity": "938.24", "unit_amount": "0.250000", "amount": "234.56"},
            ),
        ),
        Line(
            "Storage overage",
            D("12.30"),
            kind="overage",
            quantity=D("61.5"),
            unit_amount=D("0.2"),
            metric="storage",
        ),
        Line(
            "Query processing overage",
            D("7.25"),
            kind="overage",
            quantity=D("145"),
            unit_amount=D("0.05"),
            metric="query_processing",
        ),
    ]


def pdftotext(data: bytes, tmp_path: Path) -> str:
    source = tmp_path / "doc.pdf"
    source.write_bytes(data)
    return subprocess.run(
        ["pdftotext", "-layout", str(source), "-"], capture_output=True, text=True, check=True
    ).stdout


@pytest.fixture(scope="module")
def usd_invoice(billing: Billing) -> int:
    customer = billing.customer(
        name="Acme Corp",
        address={"line1": "1 Acme Way", "city": "Springfield", "region": "IL", "country": "US"},
    )
    grant = billing.grant(customer, "25.00")
    key = billing.draft(
        customer, day(10, 1), demo_lines(), discount="10.00", credits=[(grant, "25.00")]
    )
    billing.finalize(day(10, 1), prefix="PDF-")
    return int(billing.invoice(key)["id"])


def _document(engine: Engine, invoice_id: int) -> dict:
    with engine.connect() as conn:
        (context,) = load_documents(conn, [invoice_id], SELLER)
    return context


def test_the_pdf_shows_number_each_line_amount_and_total_as_formatted(
    engine: Engine, usd_invoice: int, tmp_path: Path
) -> None:
    context = _document(engine, usd_invoice)
    text = pdftotext(render_pdf(context), tmp_path)
    assert context["number"] == "PDF-2026-000001"
    assert context["number"] in text
    for amount in ["$49.00", "$30.00", "$1,234.56", "$12.30", "$7.25"]:
        assert amount in text
    assert "$1,333.11" in text  # subtotal
    assert "-$10.00" in text  # discount
    assert "$132.31" in text  # tax 10%
    assert context["total"] == "$1,455.42"
    assert context["total"] in text
    assert context["amount_due"] == "$1,430.42"
    assert "Prepaid credit" in text and "-$25.00" in text
    assert "Page 1 of 1" in text
    assert "Tier 2" in text and "938.24" in text


def test_rerendering_an_unchanged_invoice_gives_identical_bytes(
    engine: Engine, usd_invoice: int, tmp_path: Path
) -> None:
    first = render_pdf(_document(engine, usd_invoice))
    with engine.connect() as conn:
        number = conn.scalar(
            sa.text("select number from dictamesh_billing_invoices where id = :i"),
            {"i": usd_invoice},
        )
        again = render_invoice_number(conn, number, seller=SELLER)
    assert first == again
    # A fresh interpreter (new font cache, new hash seed) gives the same bytes too.
    script = (
        "import json,sys; from dagster_billing.invoicing.pdf import render_pdf;"
        "sys.stdout.buffer.write(render_pdf(json.load(sys.stdin)))"
    )
    fresh = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps(_document(engine, usd_invoice)).encode(),
        capture_output=True,
        check=True,
    ).stdout
    assert hashlib.sha256(fresh).hexdigest() == hashlib.sha256(first).hexdigest()
    (tmp_path / "doc.pdf").write_bytes(first)
    info = subprocess.run(
        ["pdfinfo", "-isodates", str(tmp_path / "doc.pdf")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "CreationDate:    2026-10-01T00:00:00Z" in info
    assert "ModDate:         2026-10-01T00:00:00Z" in info


def test_pdfs_are_stored_once_with_path_and_hash(
    engine: Engine, usd_invoice: int, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        todo = missing_pdfs(conn, day(10, 1), day(10, 2))
        assert usd_invoice in todo
        stored = store_pdfs(conn, todo, seller=SELLER, data_dir=tmp_path, workers=2)
    (pdf,) = [s for s in stored if s.number == "PDF-2026-000001"]
    path = tmp_path / "invoices" / "PDF-2026-000001.pdf"
    assert pdf.path == str(path)
    assert hashlib.sha256(path.read_bytes()).hexdigest() == pdf.sha256
    with engine.begin() as conn:
        row = conn.execute(
            sa.text("select pdf_path, pdf_sha256 from dictamesh_billing_invoices where id = :i"),
            {"i": usd_invoice},
        ).one()
        assert tuple(row) == (str(path), pdf.sha256)
        assert usd_invoice not in missing_pdfs(conn, day(10, 1), day(10, 2))
        assert store_pdfs(conn, [usd_invoice], seller=SELLER, data_dir=tmp_path / "again") == []
    assert render_pdf(_document(engine, usd_invoice)) == path.read_bytes()


def test_eur_invoice_uses_german_number_and_date_formats(
    billing: Billing, engine: Engine, tmp_path: Path
) -> None:
    customer = billing.customer(currency="EUR", locale="de_DE", name="Globex GmbH")
    key = billing.draft(
        customer,
        day(10, 5),
        [Line("Professional (monatlich)", D("1234.56"), unit_amount=D("1234.56"))],
        tax_rate="0.19",
    )
    billing.finalize(day(10, 5), prefix="EUR-")
    context = _document(engine, int(billing.invoice(key)["id"]))
    text = pdftotext(render_pdf(context), tmp_path)
    assert "1.234,56 €" in text
    assert "234,57 €" in text  # 19 % tax
    assert "1.469,13 €" in text
    assert "05.10.2026" in text
    assert "Tax (19 %)" in text


def test_jpy_invoice_has_no_decimals(billing: Billing, engine: Engine, tmp_path: Path) -> None:
    customer = billing.customer(currency="JPY", locale="ja_JP", name="Initech KK")
    key = billing.draft(
        customer,
        day(10, 6),
        [
            Line("Starter (monthly)", D("7400"), unit_amount=D("7400")),
            Line(
                "API calls overage",
                D("1235"),
                kind="overage",
                quantity=D("4940"),
                unit_amount=D("0.25"),
            ),
        ],
    )
    billing.finalize(day(10, 6), prefix="JPY-")
    context = _document(engine, int(billing.invoice(key)["id"]))
    text = pdftotext(render_pdf(context), tmp_path)
    for amount in ["¥7,400", "¥1,235", "¥864", "¥9,499"]:
        assert amount in text
    assert "¥0.25" in text  # unit prices keep their decimals
    assert "¥9,499.00" not in text
    assert "2026/10/06" in text


def test_formatter_money_per_currency_and_locale() -> None:
    assert Formatter("EUR", "de_DE").money(D("1234.56")) == "1.234,56\xa0€"
    assert Formatter("JPY", "ja_JP").money(D("1234")) == "¥1,234"
    assert Formatter("USD", "en_US").unit_price(D("0.000250")) == "$0.00025"
    assert Formatter("USD", "en_US").unit_price(D("49.000000")) == "$49.00"
    assert Formatter("USD", "en_US").date(datetime(2026, 2, 1)) == "Feb 1, 2026"


def test_a_template_directory_overrides_the_built_in_one(
    engine: Engine, usd_invoice: int, tmp_path: Path
) -> None:
    custom = tmp_path / "templates"
    shutil.copytree(DEFAULT_TEMPLATE_DIR, custom)
    html = custom / "invoice.html"
    html.write_text(html.read_text().replace("Please quote", "Kindly quote"))
    text = pdftotext(render_pdf(_document(engine, usd_invoice), custom), tmp_path)
    assert "Kindly quote PDF-2026-000001" in text
