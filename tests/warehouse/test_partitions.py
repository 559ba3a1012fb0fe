"""Usage partitions are created ahead of time and expire whole, never row by row."""

from datetime import UTC, date, datetime, timedelta

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.assets.warehouse import usage_partitions
from dagster_billing.resources import WarehouseResource
from dagster_billing.warehouse.database import Warehouse
from dagster_billing.warehouse.partitions import (
    ensure_partitions_for,
    existing_partitions,
    maintain,
    partition_name,
)

NOW = datetime(2026, 6, 15, 13, 30, tzinfo=UTC)
HOUR = NOW.replace(minute=0)


def _insert_usage(conn: sa.Connection, hour: datetime) -> None:
    org = conn.scalar(
        sa.text(
            "insert into dictamesh_billing_organizations (external_id, name, currency)"
            " values (:x, 'Partition Test', 'USD')"
            " on conflict (external_id) do update set name = excluded.name returning id"
        ),
        {"x": "partition-test"},
    )
    conn.execute(
        sa.text(
            "insert into dictamesh_billing_usage_metrics (organization_id, metric, hour_start,"
            " quantity, source) values (:org, 'api_calls', :hour, 5, 'api')"
        ),
        {"org": org, "hour": hour},
    )


def test_maintenance_creates_a_week_ahead_and_drops_expired_days(engine: Engine) -> None:
    with engine.begin() as conn:
        ensure_partitions_for(conn, NOW - timedelta(days=100), NOW - timedelta(days=80))
        _insert_usage(conn, HOUR - timedelta(days=95))
        _insert_usage(conn, HOUR - timedelta(days=85))
        result = maintain(conn, NOW, retention_days=90, days_ahead=7)
        days = set(existing_partitions(conn))
        kept = conn.scalar(sa.text("select count(*) from dictamesh_billing_usage_metrics"))
    assert {NOW.date() + timedelta(days=d) for d in range(8)} <= days
    cutoff = (NOW - timedelta(days=90)).date()
    assert min(days) == cutoff
    assert partition_name(date(2026, 3, 12)) in result.dropped
    assert all(name < partition_name(cutoff) for name in result.dropped)
    assert kept == 1


def test_second_run_is_a_no_op(engine: Engine) -> None:
    with engine.begin() as conn:
        maintain(conn, NOW, retention_days=90)
        again = maintain(conn, NOW, retention_days=90)
    assert again.created == [] and again.dropped == []


def test_a_row_outside_every_partition_is_refused(engine: Engine) -> None:
    with pytest.raises(sa.exc.DBAPIError, match="no partition"), engine.begin() as conn:
        _insert_usage(conn, datetime(2030, 1, 1, tzinfo=UTC))


def test_usage_partitions_asset_reports_what_it_did(warehouse: Warehouse) -> None:
    resource = WarehouseResource(dsn=warehouse.libpq_url(), data_dir="unused")
    as_of = datetime(2026, 9, 1, tzinfo=UTC)
    result = dg.materialize(
        [usage_partitions],
        resources={"warehouse": resource},
        run_config={"ops": {"usage_partitions": {"config": {"as_of": as_of.isoformat()}}}},
    )
    assert result.success
    metadata = result.asset_materializations_for_node("usage_partitions")[0].metadata
    assert partition_name(date(2026, 9, 8)) in metadata["created"].value


def test_usage_hours_must_start_on_the_hour(engine: Engine) -> None:
    with engine.begin() as conn:
        ensure_partitions_for(conn, NOW, NOW + timedelta(hours=1))
    with pytest.raises(sa.exc.IntegrityError, match="hour_start_check"), engine.begin() as conn:
        _insert_usage(conn, NOW)
