"""The finance marts on real finalized invoices: revenue from the issued ledger only, a
void reversed in its month, recognition of a mid-month annual start, the exactness tests
as passing asset checks, table previews in the metadata; and the marts' dbt unit tests."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import httpx
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlalchemy as sa
from openpyxl import load_workbook
from sqlalchemy.engine import Engine

from dagster_billing.assets.finance import finance_dbt_models
from dagster_billing.assets.rating import billing_dbt_models, billing_invoice_models
from dagster_billing.dbt_project import DBT_EXECUTABLE, DBT_PROFILES_DIR
from dagster_billing.definitions import build_resources
from dagster_billing.invoicing.finalize import finalize_window
from dagster_billing.invoicing.lifecycle import void_invoice
from dagster_billing.partitions import partition_range_tags
from dagster_billing.resources import WarehouseResource
from dagster_billing.resources.warehouse import dbt_env
from dagster_billing.settings import PROJECT_ROOT, load_settings
from dagster_billing.warehouse.database import Warehouse
from tests.conftest import free_port
from tests.test_cli import BILLING, billing

FINANCE_UNIT_TESTS = {
    "test_mrr_movements_each_type_on_its_effective_date",
    "test_mrr_month_end_from_movements",
    "test_void_drops_out_in_its_void_month",
    "test_recognition_of_a_mid_month_annual_start",
    "test_recognition_of_a_proration_and_of_usage_before_the_invoice",
    "test_recognition_reverses_a_void_in_its_month",
}


def _subscribe(conn: sa.Connection, name: str, plan: str, cycle: str, start: datetime) -> None:
    org = conn.scalar(
        sa.text(
            "insert into dictamesh_billing_organizations (external_id, name, currency)"
            " values (:n, :n, 'USD') returning id"
        ),
        {"n": name},
    )
    conn.execute(
        sa.text(
            "insert into dictamesh_billing_subscriptions (external_id, organization_id,"
            " plan_id, billing_cycle, seats, billing_anchor, started_at) values"
            " (:e, :org, :plan, :cycle, 3, :start, :start)"
        ),
        {"e": f"sub-{name}", "org": org, "plan": plan, "cycle": cycle, "start": start},
    )


@pytest.fixture(scope="module")
def built(engine: Engine, warehouse: Warehouse, tmp_path_factory: pytest.TempPathFactory):
    """`annual`: Professional annual from Oct 15 (4,990.00). `monthly`: Starter from Oct 1
    (99.00 on Oct 1 and Nov 1); its October invoice is voided on Nov 3. Rated through
    Nov 15, finalized through Nov 1: the annual's Nov 15 invoice stays a draft."""
    with engine.begin() as conn:
        _subscribe(conn, "annual", "professional", "annual", datetime(2026, 10, 15, tzinfo=UTC))
        _subscribe(conn, "monthly", "starter", "monthly", datetime(2026, 10, 1, tzinfo=UTC))
    resources = {
        **build_resources(load_settings()),
        "warehouse": WarehouseResource(
            dsn=warehouse.libpq_url(), data_dir=str(tmp_path_factory.mktemp("marts"))
        ),
    }
    assert dg.materialize([billing_dbt_models], resources=resources).success
    tags = partition_range_tags("2026-10-01", "2026-11-15")
    assert dg.materialize([billing_invoice_models], resources=resources, tags=tags).success
    with engine.begin() as conn:
        finalize_window(
            conn,
            datetime(2026, 10, 1, tzinfo=UTC),
            datetime(2026, 11, 2, tzinfo=UTC),
            prefix="INV-",
            due_days=30,
        )
        number = conn.scalar(
            sa.text("select number from dictamesh_billing_invoices where invoice_key = :k"),
            {"k": "sub-monthly/2026-10-01T00:00:00Z"},
        )
        void_invoice(
            conn,
            number,
            reason="billed in error",
            actor="test",
            at=datetime(2026, 11, 3, 10, tzinfo=UTC),
        )
    return dg.materialize([finance_dbt_models], resources=resources)


def _rows(engine: Engine, sql: str) -> list[tuple]:
    with engine.connect() as conn:
        return [tuple(r) for r in conn.execute(sa.text(sql))]


def test_finance_marts_build_with_passing_checks_and_previews(built) -> None:
    assert built.success
    checks = {e.check_name: e.passed for e in built.get_asset_check_evaluations()}
    assert checks["recognized_plus_deferred_is_issued_fct_revenue_recognition_"]
    assert all(checks.values()), checks
    previews = {
        e.asset_key.path[-1]: e.materialization.metadata.get("preview")
        for e in built.get_asset_materialization_events()
    }
    assert "| plan_id | month | currency |" in previews["fct_revenue_by_plan_month"].value


def test_revenue_reads_the_issued_ledger_and_books_a_void_in_its_month(
    engine: Engine, built
) -> None:
    issued = _rows(
        engine,
        "select distinct billing_date::date, invoice_status from analytics.fct_issued_invoice_lines"
        " order by 1",
    )
    # the annual's Nov 15 draft exists, but is not revenue
    drafts = _rows(
        engine, "select count(*) from analytics.fct_invoices where billing_date >= '2026-11-02'"
    )
    assert drafts[0][0] >= 1
    assert [d.isoformat() for d, _ in issued] == ["2026-10-01", "2026-10-15", "2026-11-01"]
    revenue = _rows(
        engine,
        "select plan_id, month::text, revenue, voided_revenue"
        " from analytics.fct_revenue_by_plan_month order by month, plan_id",
    )
    # October: 4,990.00 annual and 99.00 monthly; November: 99.00 issued, 99.00 voided
    assert revenue == [
        ("professional", "2026-10-01", Decimal("4990"), Decimal("0")),
        ("starter", "2026-10-01", Decimal("99"), Decimal("0")),
        ("starter", "2026-11-01", Decimal("0"), Decimal("-99")),
    ]


def test_recognition_and_deferred_balance_by_hand(engine: Engine, built) -> None:
    """Annual 4,990.00 from Oct 15 over 365 days: 4,990 x 17 / 365 = 232.41 by Oct 31,
    x 47 / 365 = 642.55 by Nov 30 (November 410.14). The voided 99.00 was recognized in
    October and is reversed in November; November's 99.00 is recognized in November."""
    deferred = _rows(
        engine,
        "select month::text, recognized_revenue, deferred_balance"
        " from analytics.fct_deferred_revenue where month <= '2026-11-01' order by month",
    )
    assert deferred == [
        ("2026-10-01", Decimal("331.41"), Decimal("4757.59")),
        ("2026-11-01", Decimal("410.14"), Decimal("4347.45")),
    ]


def test_finance_dbt_unit_tests_pass(warehouse: Warehouse) -> None:
    env = {**os.environ, **dbt_env(warehouse, "analytics")}
    models = (
        "fct_mrr_movements",
        "fct_mrr",
        "fct_revenue_by_plan_month",
        "fct_revenue_recognition",
    )
    selection = [f"{model},test_type:unit" for model in models]
    result = subprocess.run(
        [DBT_EXECUTABLE, "test", "--select", *selection, "--profiles-dir", str(DBT_PROFILES_DIR)],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-4000:]
    passed = set(re.findall(r"PASS \w+::(\w+)", result.stdout))
    assert passed == FINANCE_UNIT_TESTS


def test_export_writes_the_month_exactly_as_csv_xlsx_and_parquet(
    warehouse: Warehouse, built, tmp_path: Path
) -> None:
    """The October close: deferred revenue 4,757.59 USD, recognized 331.41."""
    dsn = warehouse.libpq_url()
    for suffix in ("csv", "xlsx", "parquet"):
        out = tmp_path / f"deferred.{suffix}"
        result = billing(
            "export", "fct_deferred_revenue", "--month", "2026-10", "-o", str(out), dsn=dsn
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == f"1 rows of fct_deferred_revenue written to {out}"
    csv = (tmp_path / "deferred.csv").read_text().splitlines()
    assert csv[1].startswith("2026-10-01,2026-10-31,USD,4757.590000,331.410000,")
    table = pq.read_table(tmp_path / "deferred.parquet")
    assert pa.types.is_decimal(table.schema.field("deferred_balance").type)
    assert table.column("deferred_balance").to_pylist() == [Decimal("4757.59")]
    sheet = load_workbook(tmp_path / "deferred.xlsx").active
    assert [cell.value for cell in sheet[1]][:4] == [
        "month",
        "month_end",
        "currency",
        "deferred_balance",
    ]
    assert sheet["D2"].value == pytest.approx(4757.59)


def test_export_refuses_bad_input_with_one_line(warehouse: Warehouse, tmp_path: Path) -> None:
    dsn = warehouse.libpq_url()
    cases = {
        ("fct_nope", "-o", "x.csv"): "error: MART: unknown mart 'fct_nope'",
        ("fct_mrr", "-o", "x.txt"): "error: -o: the file must end in",
        ("fct_mrr", "--month", "2026-13", "-o", "x.csv"): "error: --month: expected YYYY-MM",
    }
    for args, message in cases.items():
        result = billing("export", *args, dsn=dsn)
        assert result.returncode == 2
        assert result.stderr.strip().startswith(message) and "\n" not in result.stderr.strip()


def test_docs_generate_the_site_with_the_marts_and_exposures_and_serve_it(
    warehouse: Warehouse, built
) -> None:
    port = free_port()
    environ = {**os.environ, "BILLING_DATABASE_DSN": warehouse.libpq_url()}
    server = subprocess.Popen(
        [BILLING, "docs", "--port", str(port)],
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 180
        page = None
        while time.monotonic() < deadline and server.poll() is None:
            try:
                page = httpx.get(f"http://127.0.0.1:{port}/", timeout=2)
                break
            except httpx.TransportError:
                time.sleep(1)
        assert page is not None and page.status_code == 200, server.poll()
        catalog = httpx.get(f"http://127.0.0.1:{port}/catalog.json", timeout=5).json()
        manifest = httpx.get(f"http://127.0.0.1:{port}/manifest.json", timeout=5).json()
    finally:
        os.killpg(server.pid, signal.SIGINT)
        server.wait(timeout=30)
    assert "model.dictamesh_billing.fct_revenue_recognition" in catalog["nodes"]
    assert "exposure.dictamesh_billing.finance_month_close" in manifest["exposures"]
