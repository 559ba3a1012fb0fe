"""The finance marts for payments, built by dbt over payments made through localstripe,
and their dbt unit tests (hand-computed expectations)."""

from __future__ import annotations

import os
import re
import subprocess
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.dbt_project import DBT_EXECUTABLE, DBT_PROFILES_DIR
from dagster_billing.payments.charging import charge_invoice
from dagster_billing.payments.refunds import refund_invoice
from dagster_billing.resources.warehouse import dbt_env
from dagster_billing.settings import PROJECT_ROOT
from dagster_billing.warehouse.database import Warehouse

MODELS = "stg_billing__payments+ stg_billing__payment_ledger+ stg_billing__invoice_balances+"


def _dbt(warehouse: Warehouse, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [DBT_EXECUTABLE, *args, "--profiles-dir", str(DBT_PROFILES_DIR)],
        cwd=PROJECT_ROOT,
        env={**os.environ, **dbt_env(warehouse, "analytics")},
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def test_payment_marts_build_and_add_up(
    engine: Engine, warehouse: Warehouse, gateway, open_invoice
) -> None:
    now = datetime.now(UTC)
    paid = open_invoice(gateway=gateway, amount="100.00")
    failed = open_invoice("pm_card_chargeCustomerFail", gateway=gateway, amount="40.00")
    charge_invoice(engine, gateway, paid.id, now=now)
    charge_invoice(engine, gateway, failed.id, now=now)
    refund_invoice(engine, gateway, paid.number, amount="25", reason="x", actor="t", at=now)
    with engine.begin() as conn:  # make the failed one 45 days overdue
        conn.execute(sa.text("alter table dictamesh_billing_invoices disable trigger user"))
        conn.execute(
            sa.text("update dictamesh_billing_invoices set due_at = :d where id = :i"),
            {"d": now - timedelta(days=45), "i": failed.id},
        )
        conn.execute(sa.text("alter table dictamesh_billing_invoices enable trigger user"))

    built = _dbt(warehouse, "build", "--select", MODELS)
    assert built.returncode == 0, built.stdout[-4000:]

    with engine.connect() as conn:
        daily = conn.execute(
            sa.text(
                "select payments, refunds, payments_amount, refunds_amount, net_amount"
                " from analytics.fct_payments_daily where currency = 'USD' and payment_date = :d"
            ),
            {"d": now.date()},
        ).one()
        aging = conn.execute(
            sa.text(
                "select aging_bucket, days_past_due from analytics.fct_payments_invoice_aging"
                " where invoice_id = :i"
            ),
            {"i": failed.id},
        ).one()
        collection = conn.execute(
            sa.text(
                "select invoices, invoices_paid, amount_due, amount_collected, collection_rate"
                " from analytics.fct_payments_collection_rate where currency = 'USD'"
            )
        ).all()
        failures = conn.scalar(
            sa.text(
                "select sum(attempts) from analytics.fct_payments_failures"
                " where failure_code = 'card_declined'"
            )
        )
    assert daily == (1, 1, Decimal("100.00"), Decimal("25.00"), Decimal("75.00"))
    assert aging == ("31-60", 45)
    assert failures >= 1
    # Both invoices were issued in one month: 100 of 140 collected (refunds not netted).
    assert collection == [(2, 1, Decimal("140.00"), Decimal("100.00"), Decimal("0.714286"))]

    unit = _dbt(
        warehouse,
        "test",
        "--select",
        "unit_test:test_payments_daily_nets_refunds_against_payments",
    )
    assert unit.returncode == 0, unit.stdout[-4000:]
    assert re.search(r"PASS=1\b", unit.stdout), unit.stdout[-2000:]
