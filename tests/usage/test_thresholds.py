"""Quota thresholds: one outbox event per organization, metric, period and threshold."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.sensors import usage_threshold_sensor
from dagster_billing.usage.realtime import billed_quantities
from dagster_billing.usage.thresholds import record_threshold_crossings
from dagster_billing.warehouse.calendar import billing_period
from dagster_billing.warehouse.database import Warehouse
from tests.usage.helpers import create_organizations, create_subscription, insert_usage, resources

ANCHOR = datetime(2026, 6, 15, tzinfo=UTC)
NOW = datetime(2026, 7, 20, 12, tzinfo=UTC)  # period [07-15, 08-15): 31 days = 744 hours
IN_PERIOD = datetime(2026, 7, 16, 3, tzinfo=UTC)


def test_periods_follow_the_anchor_with_month_end_fallback(engine: Engine) -> None:
    jan31 = datetime(2026, 1, 31, 9, tzinfo=UTC)
    with engine.connect() as conn:

        def period(anchor: datetime, at: datetime) -> tuple[datetime, datetime]:
            found = billing_period(conn, anchor, "monthly", at)
            return found.start, found.end

        assert period(jan31, datetime(2026, 3, 1, tzinfo=UTC)) == (
            datetime(2026, 2, 28, 9, tzinfo=UTC),
            datetime(2026, 3, 31, 9, tzinfo=UTC),
        )
        assert period(jan31, datetime(2026, 4, 30, 8, 59, tzinfo=UTC)) == (
            datetime(2026, 3, 31, 9, tzinfo=UTC),
            datetime(2026, 4, 30, 9, tzinfo=UTC),
        )
        assert period(ANCHOR, NOW) == (
            datetime(2026, 7, 15, tzinfo=UTC),
            datetime(2026, 8, 15, tzinfo=UTC),
        )


def _events(engine: Engine, org: str) -> list[tuple[str, int]]:
    with engine.connect() as conn:
        return sorted(
            (payload["metric"], payload["threshold"])
            for (payload,) in conn.execute(
                sa.text(
                    "select payload from dictamesh_billing_outbox"
                    " where event_type = 'billing.usage.threshold_reached' and aggregate_id = :o"
                ),
                {"o": org},
            )
        )


def _tick(engine: Engine, now: datetime = NOW) -> list[tuple[str, str, int]]:
    with engine.begin() as conn:
        return [
            (c.organization, c.metric, c.threshold) for c in record_threshold_crossings(conn, now)
        ]


def test_the_usage_api_counts_storage_as_invoices_do(engine: Engine) -> None:
    """0.00036 GB-hours over April's 720 hours average 0.0000005 GB: rounded half up at
    6 places, as the overage model rounds it (the API's own copy rounded half to even,
    to 0, and floored a period's hours)."""
    start = datetime(2026, 4, 1, tzinfo=UTC)
    totals = {"storage": Decimal("0.00036"), "api_calls": Decimal("7")}
    with engine.connect() as conn:
        billed = billed_quantities(conn, totals, start, start + timedelta(days=30))
    assert billed == {"storage": Decimal("0.000001"), "api_calls": Decimal("7")}


def test_free_plan_crossings_raise_one_event_each(engine: Engine) -> None:
    org = create_organizations(engine, "thr-free")["thr-free"]
    create_subscription(engine, org, "free", ANCHOR, "sub-thr-free")
    # Free quota: 10,000 calls. Usage before the period does not count.
    insert_usage(engine, org, "api_calls", ANCHOR + timedelta(days=1), 50_000)
    insert_usage(engine, org, "api_calls", IN_PERIOD, 7_999)
    assert _tick(engine) == []

    insert_usage(engine, org, "api_calls", IN_PERIOD + timedelta(hours=1), 1)  # 8,000 = 80%
    assert _tick(engine) == [("thr-free", "api_calls", 80)]
    assert _tick(engine) == []  # exactly once

    insert_usage(engine, org, "api_calls", IN_PERIOD + timedelta(hours=2), 2_000)  # 10,000
    # Storage: quota 1 GB-month; 2 GB for 372 of the period's 744 hours averages 1 GB.
    for hour in range(372):
        insert_usage(engine, org, "storage", IN_PERIOD + timedelta(hours=hour), 2)
    assert sorted(_tick(engine)) == [
        ("thr-free", "api_calls", 100),
        ("thr-free", "storage", 80),
        ("thr-free", "storage", 100),
    ]
    assert _events(engine, "thr-free") == [
        ("api_calls", 80),
        ("api_calls", 100),
        ("storage", 80),
        ("storage", 100),
    ]
    with engine.connect() as conn:
        payload, dedupe_key = conn.execute(
            sa.text(
                "select payload, dedupe_key from dictamesh_billing_outbox"
                " where aggregate_id = 'thr-free' and payload ->> 'threshold' = '100'"
                " and payload ->> 'metric' = 'api_calls'"
            )
        ).one()
    assert dedupe_key == f"usage-threshold:{org}:api_calls:2026-07-15T00:00:00Z:100"
    assert (payload["quota"], payload["usage"], payload["plan_id"]) == (
        "10000.000000",
        "10000.000000",
        "free",
    )

    # The next period starts from zero again.
    assert _tick(engine, NOW + timedelta(days=31)) == []


def test_sensor_writes_events_for_the_current_period(warehouse: Warehouse, engine: Engine) -> None:
    now = datetime.now(UTC)
    org = create_organizations(engine, "thr-live")["thr-live"]
    create_subscription(engine, org, "starter", now - timedelta(days=3), "sub-thr-live")
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    insert_usage(engine, org, "transfer", hour, Decimal("100.5"))  # starter: 100 GB
    warehouse_resource = resources(warehouse, None)["warehouse"]
    with dg.build_sensor_context(resources={"warehouse": warehouse_resource}) as context:
        result = usage_threshold_sensor(context)
        assert isinstance(result, dg.SkipReason)
        assert _events(engine, "thr-live") == [("transfer", 80), ("transfer", 100)]
        usage_threshold_sensor(context)
    assert _events(engine, "thr-live") == [("transfer", 80), ("transfer", 100)]
