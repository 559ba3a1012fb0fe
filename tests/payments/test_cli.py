"""`billing invoice pay NUMBER --manual --reference` and `billing invoice refund`, run as
a user runs them (Stripe charge and refund through localstripe)."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy.engine import Engine

from dagster_billing.warehouse.database import Warehouse
from tests.conftest import STRIPE_TEST_API_KEY
from tests.payments.conftest import invoice_status, payment_rows
from tests.test_cli import billing as run


def test_pay_manually_then_refund_part_with_a_credit_note(
    engine: Engine, warehouse: Warehouse, open_invoice, tmp_path: Path
) -> None:
    invoice = open_invoice(None, amount="80.00")
    dsn = warehouse.libpq_url()
    env = {"BILLING_DATA_DIR": str(tmp_path)}

    missing = run("invoice", "pay", invoice.number, "--manual", dsn=dsn, **env)
    assert missing.returncode == 2
    assert (
        missing.stderr.strip()
        == "error: reference: a manual payment needs the transfer's reference"
    )

    paid = run(
        "invoice", "pay", invoice.number, "--manual", "--reference", "WIRE-991", dsn=dsn, **env
    )
    assert paid.returncode == 0, paid.stderr
    assert invoice_status(engine, invoice.id) == "paid"

    refunded = run(
        "invoice", "refund", invoice.number, "--amount", "20", "--reason", "Outage", dsn=dsn, **env
    )
    assert refunded.returncode == 0, refunded.stderr
    assert "refunded 20.00 USD, credit note CN-" in refunded.stdout
    assert list((tmp_path / "credit_notes").glob("CN-*.pdf"))

    too_much = run(
        "invoice", "refund", invoice.number, "--amount", "61", "--reason", "x", dsn=dsn, **env
    )
    assert too_much.returncode == 2
    assert too_much.stderr.strip().startswith("error: amount: 61 is more than the 60.00")
    assert "Traceback" not in too_much.stderr


def test_pay_through_stripe(
    engine: Engine, warehouse: Warehouse, gateway, open_invoice, stripe_server: str
) -> None:
    invoice = open_invoice(gateway=gateway)
    result = run(
        "invoice",
        "pay",
        invoice.number,
        dsn=warehouse.libpq_url(),
        STRIPE_ENABLED="true",
        STRIPE_API_KEY=STRIPE_TEST_API_KEY,
        STRIPE_API_BASE=stripe_server,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{invoice.number}: succeeded"
    assert [r["status"] for r in payment_rows(engine, invoice.id)] == ["succeeded"]
