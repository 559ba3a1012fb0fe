"""USAGE_RETENTION_DAYS reaches the maintenance asset, and every day it drops is reported."""

from __future__ import annotations

from datetime import UTC, date, datetime

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.assets.warehouse import usage_partitions
from dagster_billing.definitions import build_resources
from dagster_billing.settings import load_settings
from dagster_billing.warehouse.database import Warehouse
from dagster_billing.warehouse.partitions import existing_partitions, partition_name
from tests.usage.helpers import create_organizations, insert_usage

AS_OF = datetime(2026, 6, 1, tzinfo=UTC)


def test_usage_retention_days_decides_what_maintenance_drops_and_it_reports_each_day(
    monkeypatch: pytest.MonkeyPatch, warehouse: Warehouse, engine: Engine
) -> None:
    org = create_organizations(engine, "retention-org")["retention-org"]
    insert_usage(engine, org, "api_calls", datetime(2026, 4, 25, 3, tzinfo=UTC), 7)  # 37 days
    insert_usage(engine, org, "api_calls", datetime(2026, 4, 25, 4, tzinfo=UTC), 8)
    insert_usage(engine, org, "api_calls", datetime(2026, 5, 10, 3, tzinfo=UTC), 9)  # 22 days
    monkeypatch.setenv("BILLING_DATABASE_DSN", warehouse.libpq_url())
    monkeypatch.setenv("USAGE_RETENTION_DAYS", "30")
    resources = build_resources(load_settings())
    with engine.connect() as conn:
        before = set(existing_partitions(conn).values())

    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [usage_partitions],
        instance=instance,
        resources={"warehouse": resources["warehouse"]},
        run_config={"ops": {"usage_partitions": {"config": {"as_of": AS_OF.isoformat()}}}},
    )

    assert result.success
    metadata = result.asset_materializations_for_node("usage_partitions")[0].metadata
    assert metadata["retention_days"].value == 30
    with engine.connect() as conn:
        after = set(existing_partitions(conn).values())
        remaining = conn.scalar(
            sa.text(
                "select sum(quantity) from dictamesh_billing_usage_metrics"
                " where organization_id = :org"
            ),
            {"org": org},
        )
    reported = metadata["dropped_rows"].value
    assert before - after == set(reported) == set(metadata["dropped"].value)
    assert reported[partition_name(date(2026, 4, 25))] == 2
    assert partition_name(date(2026, 5, 10)) in after
    assert remaining == 9
    logged = [entry.user_message for entry in instance.all_logs(result.run_id)]
    assert "dropped dictamesh_billing_usage_metrics_p20260425: 2 usage rows older than 30 days" in (
        logged
    )
