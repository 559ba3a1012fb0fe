"""The whole Definitions object loads, so a broken import or wiring fails CI."""

import subprocess
import sys
from pathlib import Path

import dagster as dg

from dagster_billing.definitions import defs
from dagster_billing.partitions import daily_partitions, hourly_partitions

ROOT = Path(__file__).resolve().parent.parent


def test_asset_graph_has_the_expected_keys_and_groups() -> None:
    graph = defs.resolve_asset_graph()
    groups = {
        key.to_user_string(): graph.get(key).group_name for key in graph.materializable_asset_keys
    }
    assert groups["usage_partitions"] == "warehouse"
    assert groups["billing/dictamesh_billing_price_books"] == "catalog"
    assert groups["staging/stg_billing__price_books"] == "dbt_staging"
    price_books = graph.get(dg.AssetKey(["staging", "stg_billing__price_books"]))
    assert dg.AssetKey(["billing", "dictamesh_billing_price_books"]) in price_books.parent_keys


def test_dbt_tests_are_asset_checks() -> None:
    checks = {key.name for key in defs.resolve_asset_graph().asset_check_keys}
    assert "unique_stg_billing__currencies_currency" in checks


def test_partitions_are_utc_hourly_and_daily() -> None:
    assert hourly_partitions.timezone == "UTC"
    assert daily_partitions.timezone == "UTC"
    assert hourly_partitions.get_partition_keys_between_indexes(0, 2) == [
        "2026-01-01-00:00",
        "2026-01-01-01:00",
    ]


def test_jobs_and_schedules_resolve() -> None:
    assert defs.resolve_job_def("warehouse_maintenance") is not None
    assert defs.resolve_schedule_def("warehouse_maintenance_schedule").cron_schedule == "15 0 * * *"


def test_dagster_definitions_validate_passes() -> None:
    dagster = Path(sys.executable).with_name("dagster")
    result = subprocess.run(
        [str(dagster), "definitions", "validate", "-w", str(ROOT / "workspace.yaml")],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_invoice_models_are_daily_partitioned_with_a_single_run_backfill() -> None:
    graph = defs.resolve_asset_graph()
    invoices = graph.get(dg.AssetKey(["fct_invoices"]))
    assert invoices.partitions_def == daily_partitions
    assert invoices.backfill_policy == dg.BackfillPolicy.single_run()
    staging = graph.get(dg.AssetKey(["staging", "stg_billing__subscriptions"]))
    assert staging.partitions_def is None


def test_daily_billing_job_rates_then_finalizes() -> None:
    job = defs.resolve_job_def("invoicing_daily")
    keys = {key.to_user_string() for key in job.asset_layer.executable_asset_keys}
    assert {"fct_invoices", "invoices_finalized", "invoice_pdfs"} <= keys
