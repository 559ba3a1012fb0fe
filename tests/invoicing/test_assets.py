"""The invoicing assets and checks, materialized for one billing day on real Postgres."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.assets.invoicing import invoices_finalized, invoicing_assets, invoicing_checks
from dagster_billing.invoicing.checks import numbering_problems
from dagster_billing.partitions import hourly_partitions
from dagster_billing.resources import InvoicingResource, WarehouseResource
from dagster_billing.settings import load_settings
from dagster_billing.warehouse.database import Warehouse
from tests.invoicing.conftest import Billing, Line, day


def test_a_billing_day_is_finalized_rendered_and_checked_and_reruns_change_nothing(
    billing: Billing, engine: Engine, warehouse: Warehouse, tmp_path: Path
) -> None:
    for _ in range(3):
        billing.draft(billing.customer(), day(9, 1), [Line("Starter (monthly)", Decimal("49.00"))])
    resources = {
        "warehouse": WarehouseResource(dsn=warehouse.libpq_url(), data_dir=str(tmp_path)),
        "invoicing": InvoicingResource.from_settings(
            load_settings(billing_data_dir=tmp_path, invoice_number_prefix="AS-")
        ),
    }
    for _ in range(2):
        result = dg.materialize(
            [*invoicing_assets, *invoicing_checks], resources=resources, partition_key="2026-09-01"
        )
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert {c.check_name: c.passed for c in checks} == {
            "usage_complete": True,
            "invoice_totals_add_up": True,
            "invoice_numbers_gap_free": True,
            "every_invoice_has_a_pdf": True,
        }
    finalized = result.asset_materializations_for_node("invoices_finalized")[0].metadata
    assert finalized["finalized"].value == 0 and finalized["already_finalized"].value == 3
    assert sorted(p.name for p in (tmp_path / "invoices").iterdir()) == [
        "AS-2026-000001.pdf",
        "AS-2026-000002.pdf",
        "AS-2026-000003.pdf",
    ]
    with engine.connect() as conn:
        assert (
            conn.scalar(
                sa.text("select count(*) from dictamesh_billing_invoices where number like 'AS-%'")
            )
            == 3
        )


def test_the_numbering_check_sees_a_gap(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_invoice_number_counters (prefix, year, last_value)"
                " values ('GAP-', 2026, 2)"
            )
        )
        assert numbering_problems(conn) == [
            "GAP-2026: counter at 2, 0 invoices, 0 distinct numbers, highest 0"
        ]
        conn.rollback()


def test_finalization_is_blocked_by_missing_or_failed_usage_hours_until_waived(
    billing: Billing, engine: Engine, warehouse: Warehouse, tmp_path: Path
) -> None:
    """October 31 20:00-24:00 is what the November 1 invoice bills: 20:00 ingested, 21:00
    a successful usage_hourly run, 22:00 never ingested, 23:00 a failed run."""
    key = billing.draft(billing.customer(), day(11, 1), [Line("Starter", Decimal("49.00"))])
    hour = datetime(2026, 10, 31, 20, tzinfo=UTC)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "update analytics.fct_invoices set usage_start = :s, usage_end = :e"
                " where invoice_key = :k"
            ),
            {"s": hour, "e": day(11, 1), "k": key},
        )
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_usage_ingestions"
                " (hour_start, series, samples, rows_written, rows_changed, rejects)"
                " values (:h, 0, 0, 0, 0, 0)"
            ),
            {"h": hour},
        )

    @dg.asset(name="usage_hourly", partitions_def=hourly_partitions)
    def failing_usage_hourly() -> None:
        raise RuntimeError("Prometheus unreachable")

    resources = {
        "warehouse": WarehouseResource(dsn=warehouse.libpq_url(), data_dir=str(tmp_path)),
        "invoicing": InvoicingResource.from_settings(
            load_settings(billing_data_dir=tmp_path, invoice_number_prefix="GATE-")
        ),
    }
    with dg.instance_for_test() as instance:
        instance.report_runless_asset_event(
            dg.AssetMaterialization("usage_hourly", partition="2026-10-31-21:00")
        )
        dg.materialize(
            [failing_usage_hourly],
            instance=instance,
            partition_key="2026-10-31-23:00",
            raise_on_error=False,
        )

        def finalize(waived: list[str]) -> dg.ExecuteInProcessResult:
            return dg.materialize(
                [invoices_finalized],
                instance=instance,
                resources=resources,
                partition_key="2026-11-01",
                run_config={
                    "ops": {"invoices_finalized": {"config": {"waive_usage_hours": waived}}}
                },
                raise_on_error=False,
            )

        blocked = finalize([])
        assert not blocked.success
        (check,) = blocked.get_asset_check_evaluations()
        assert (check.check_name, check.passed) == ("usage_complete", False)
        assert check.description == (
            "invoices_finalized[2026-11-01]: usage_hourly partitions the invoices bill are"
            " 1 missing (2026-10-31-22:00) and 1 failed (2026-10-31-23:00); an invoice is"
            " final once issued, so it is not finalized over a hole. Backfill them (Dagster"
            " UI: usage_hourly > Materialize, partitions 2026-10-31-22:00..2026-10-31-23:00),"
            " or, if those hours truly had no usage, waive them: run config ops:"
            " {invoices_finalized: {config: {waive_usage_hours:"
            ' ["2026-10-31-22:00..2026-10-31-23:00"]}}}'
        )
        assert _count(engine, "GATE-") == 0

        assert not finalize(["2026-10-31-22:00"]).success
        waived = finalize(["2026-10-31-22:00..2026-10-31-23:00"])
        assert waived.success
        (check,) = waived.get_asset_check_evaluations()
        assert check.passed
        assert check.metadata["waived"].value == "2026-10-31-22:00..2026-10-31-23:00"
        assert check.metadata["hours_needed"].value == 4
    assert _count(engine, "GATE-") == 1


def _count(engine: Engine, prefix: str) -> int:
    with engine.connect() as conn:
        return conn.scalar(
            sa.text("select count(*) from dictamesh_billing_invoices where number like :p"),
            {"p": f"{prefix}%"},
        )
