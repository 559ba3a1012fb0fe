"""`dbt build` runs green against the warehouse, through the Dagster assets."""

import json
import os
import re
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from dagster_dbt import DbtCliResource
from sqlalchemy.engine import Engine

from dagster_billing.assets.finance import finance_dbt_models
from dagster_billing.assets.rating import billing_dbt_models, billing_invoice_models
from dagster_billing.dbt_project import (
    DBT_EXECUTABLE,
    DBT_PROFILES_DIR,
    billing_dbt_project,
    environment,
)
from dagster_billing.definitions import build_resources, defs
from dagster_billing.rating.lineage import finalized_table_key
from dagster_billing.resources import WarehouseResource
from dagster_billing.resources.rating import window_options
from dagster_billing.resources.warehouse import dbt_env
from dagster_billing.settings import PROJECT_ROOT, load_settings
from dagster_billing.warehouse.database import Warehouse, make_engine
from tests.usage.helpers import create_organizations, create_subscription


def _resources(warehouse: Warehouse) -> dict[str, object]:
    """The product's resources, pointed at the test warehouse."""
    return {
        **build_resources(load_settings()),
        "warehouse": WarehouseResource(dsn=warehouse.libpq_url(), data_dir="unused"),
    }


def _dbt_command(warehouse: Warehouse, *args: str) -> subprocess.CompletedProcess[str]:
    """`dbt <args>` as someone at a shell would run it, against the test warehouse, with
    no billing window in the environment."""
    env = {**os.environ, **dbt_env(warehouse, "analytics")}
    env.pop("PGOPTIONS", None)
    command = [DBT_EXECUTABLE, *args, "--profiles-dir", str(DBT_PROFILES_DIR)]
    return subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True)


def test_dbt_build_is_green_and_checks_pass(warehouse: Warehouse) -> None:
    resources = _resources(warehouse)
    assert isinstance(resources["dbt"], DbtCliResource)
    result = dg.materialize([billing_dbt_models], resources=resources)
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations)
    with make_engine(warehouse).connect() as conn:
        tiers = conn.scalar(
            sa.text(
                "select count(*) from analytics_staging.stg_billing__pricing_tiers"
                " where currency = 'JPY'"
            )
        )
    assert tiers == 11
    assert billing_dbt_project.manifest_path.exists()


def test_invoice_models_unit_tests_and_documented_marts(warehouse: Warehouse) -> None:
    """The daily billing models build for a partition with their checks passing; the
    dbt unit tests (hand-computed pricing rules) pass; every mart column is documented."""
    resources = _resources(warehouse)
    assert dg.materialize([billing_dbt_models], resources=resources).success
    result = dg.materialize(
        [billing_invoice_models], resources=resources, partition_key="2026-11-01"
    )
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations)
    # the finance marts read finalized invoices: built (empty here) after the others
    assert dg.materialize([finance_dbt_models], resources=resources).success

    unit = _dbt_command(warehouse, "test", "--select", "test_type:unit")
    assert unit.returncode == 0, unit.stdout[-4000:]
    passed = re.search(r"PASS=(\d+)", unit.stdout)
    assert passed and int(passed.group(1)) >= 11

    manifest = json.loads(billing_dbt_project.manifest_path.read_text())
    documented = {
        node["name"]: {c for c, meta in node["columns"].items() if meta.get("description")}
        for node in manifest["nodes"].values()
        if node["resource_type"] == "model" and node["fqn"][1] == "marts"
    }
    with make_engine(warehouse).connect() as conn:
        for model, columns in documented.items():
            actual = set(
                conn.scalars(
                    sa.text(
                        "select column_name from information_schema.columns"
                        " where table_schema = 'analytics' and table_name = :t"
                    ),
                    {"t": model},
                )
            )
            assert actual and actual <= columns, (model, actual - columns)


def test_the_billing_window_reaches_every_session_as_settings(
    warehouse: Warehouse, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The window travels in libpq's PGOPTIONS (the models read it when they run),
    beside whatever options the environment already had, and only inside the block."""
    monkeypatch.setenv("PGOPTIONS", "-c statement_timeout=123s")
    start, end = datetime(2026, 11, 1, tzinfo=UTC), datetime(2026, 11, 2, tzinfo=UTC)
    query = sa.text(
        "select current_setting('dictamesh.billing_window_start')::timestamptz,"
        " current_setting('dictamesh.billing_window_end')::timestamptz,"
        " current_setting('statement_timeout')"
    )
    with environment(window_options(start, end)):
        engine = make_engine(warehouse)
        with engine.connect() as conn:
            assert conn.execute(query).one() == (start, end, "123s")
        engine.dispose()
    assert os.environ["PGOPTIONS"] == "-c statement_timeout=123s"


def test_a_failed_dbt_build_fails_the_step_with_dbts_errors_and_keeps_its_log(
    warehouse: Warehouse, engine: Engine
) -> None:
    """dbt runs inside the step: its failure is the step's, naming what dbt reported and
    the run's dbt.log, which is kept (a successful run's target directory is not)."""
    resources = _resources(warehouse)
    runs = billing_dbt_project.project_dir / billing_dbt_project.target_path
    before = {p for p in runs.iterdir() if p.is_dir()}
    assert dg.materialize([billing_dbt_models], resources=resources).success
    assert {p for p in runs.iterdir() if p.is_dir()} == before

    with engine.begin() as conn:
        conn.execute(sa.text("alter table dictamesh_billing_fx_rates rename to fx_rates_away"))
    try:
        result = dg.materialize([billing_dbt_models], resources=resources, raise_on_error=False)
    finally:
        with engine.begin() as conn:
            conn.execute(sa.text("alter table fx_rates_away rename to dictamesh_billing_fx_rates"))
    assert not result.success
    failure = next(e for e in result.all_events if e.is_step_failure)
    message = failure.step_failure_data.error.message
    assert 'relation "public.dictamesh_billing_fx_rates" does not exist' in message
    log = re.search(r"log: (\S+/dbt\.log)", message)
    assert log and Path(log[1]).exists()
    assert "dictamesh_billing_fx_rates" in Path(log[1]).read_text()
    shutil.rmtree(Path(log[1]).parent)


def test_an_organization_added_after_the_marts_were_built_is_billed_the_next_day(
    warehouse: Warehouse, engine: Engine
) -> None:
    """The dimension the invoices' tests compare with is always current: a new
    organization's first invoice passes `relationships` to dim_organizations without
    anyone rebuilding the unpartitioned models first."""
    resources = _resources(warehouse)
    assert dg.materialize([billing_dbt_models], resources=resources).success
    start = datetime(2026, 9, 1, tzinfo=UTC)
    org = create_organizations(engine, "newcomer")["newcomer"]
    create_subscription(engine, org, "starter", start, "sub-newcomer")
    result = dg.materialize(
        [billing_invoice_models], resources=resources, partition_key="2026-09-01"
    )
    assert result.success
    with engine.connect() as conn:
        billed = conn.scalar(
            sa.text(
                "select count(*) from analytics.fct_invoices i"
                " join analytics.dim_organizations d using (organization_id)"
                " where d.organization_external_id = 'newcomer' and i.billing_date = :day"
            ),
            {"day": start.date()},
        )
    assert billed == 1


def test_a_dbt_run_without_a_billing_window_fails_saying_how_to_give_one(
    warehouse: Warehouse, engine: Engine
) -> None:
    """No window, no default: a plain `dbt build` of the billing models fails before the
    incremental marts delete anything, and says how to give a window; the drafts of
    2026-01-01 (what a default window would have rebuilt) stay as they were."""
    resources = _resources(warehouse)
    assert dg.materialize([billing_dbt_models], resources=resources).success
    start = datetime(2026, 1, 1, tzinfo=UTC)
    org = create_organizations(engine, "windowless")["windowless"]
    create_subscription(engine, org, "starter", start, "sub-windowless")
    assert dg.materialize(
        [billing_invoice_models], resources=resources, partition_key="2026-01-01"
    ).success
    drafts = sa.text("select count(*) from analytics.fct_invoices where billing_date = :day")
    with engine.connect() as conn:
        before = conn.scalar(drafts, {"day": start.date()})
    assert before

    build = _dbt_command(
        warehouse, "build", "--select", "tag:billing_daily", "--exclude-resource-type", "unit_test"
    )
    assert build.returncode != 0
    assert "no billing window" in build.stdout
    assert "dictamesh.billing_window_start=" in build.stdout
    with engine.connect() as conn:
        assert conn.scalar(drafts, {"day": start.date()}) == before


def test_dbt_is_run_in_one_place() -> None:
    """The Dagster step and `billing simulate` share one runner (dbt_project.run_dbt):
    nothing else starts dbt in process, nor imports dagster-dbt's internals."""
    package = PROJECT_ROOT / "dagster_billing"
    runners = {
        str(path.relative_to(PROJECT_ROOT))
        for path in package.rglob("*.py")
        if "dbtRunner(" in path.read_text()
    }
    assert runners == {"dagster_billing/dbt_project.py"}
    internals = {
        str(path.relative_to(PROJECT_ROOT))
        for path in package.rglob("*.py")
        if re.search(r"from dagster_dbt\.\w", path.read_text())
    }
    assert internals <= {"dagster_billing/resources/dbt.py"}


def test_the_finalized_invoice_tables_feed_rating_in_the_asset_graph() -> None:
    """The loop finalization -> the next day's rating shows in Dagster: the dbt sources
    of the tables `invoices_finalized` writes carry keys of their own (a cycle between
    assets is not allowed), declared in the invoicing group and naming their writer."""
    graph = defs.resolve_asset_graph()
    for table, staging in (
        ("dictamesh_billing_invoices", "stg_billing__invoices"),
        ("dictamesh_billing_invoice_line_items", "stg_billing__invoice_line_items"),
        ("dictamesh_billing_credits", "stg_billing__credits"),
    ):
        key = finalized_table_key(table)
        assert key.path[0] == "invoices_finalized"
        node = graph.get(key)
        assert node.group_name == "invoicing"
        assert "written by `invoices_finalized`" in (node.description or "")
        assert key in graph.get(dg.AssetKey(["staging", staging])).parent_keys
    # ... and the rest of the loop: staging -> the rating models -> finalization
    finalized = graph.get(dg.AssetKey("invoices_finalized"))
    assert dg.AssetKey("fct_invoices") in finalized.parent_keys
    assert (
        dg.AssetKey(["staging", "stg_billing__invoices"])
        in graph.get(dg.AssetKey(["intermediate", "int_rated_invoices"])).parent_keys
    )
