"""The usage jobs and schedules are wired into Definitions and ask for the right hours."""

from datetime import UTC, datetime

import dagster as dg
import pytest

from dagster_billing.definitions import defs
from dagster_billing.schedules import usage_hourly_trailing_schedule


def test_trailing_schedule_reingests_the_last_three_closed_hours() -> None:
    schedule = defs.resolve_schedule_def("usage_hourly_trailing")
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 3, 10, 0, 5, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    )
    requests = schedule.evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == [
        "2026-03-09-21:00",
        "2026-03-09-22:00",
        "2026-03-09-23:00",
    ]
    assert len({r.run_key for r in requests}) == 3


def test_trailing_window_is_configurable_and_validated() -> None:
    context = dg.build_schedule_context(
        scheduled_execution_time=datetime(2026, 1, 1, 1, 5, tzinfo=UTC),
        repository_def=defs.get_repository_def(),
    )
    requests = usage_hourly_trailing_schedule(6).evaluate_tick(context).run_requests
    assert [r.partition_key for r in requests] == ["2026-01-01-00:00"]  # nothing before the start
    with pytest.raises(ValueError, match="trailing_hours: must be >= 1, got 0"):
        usage_hourly_trailing_schedule(0)


def test_usage_assets_jobs_and_sensor_are_defined() -> None:
    graph = defs.resolve_asset_graph()
    daily = graph.get(dg.AssetKey("usage_daily"))
    assert dg.AssetKey("usage_hourly") in daily.parent_keys
    assert defs.resolve_job_def("usage_hourly_job") is not None
    assert defs.resolve_schedule_def("usage_daily_rollup").cron_schedule == "30 2 * * *"
    assert defs.resolve_sensor_def("usage_thresholds").minimum_interval_seconds == 300


def test_usage_by_month_is_rebuilt_daily_after_invoicing() -> None:
    schedule = defs.resolve_schedule_def("usage_monthly_schedule")
    assert schedule.cron_schedule == "30 4 * * *"
    job = defs.resolve_job_def("usage_monthly")
    assert {key.path[-1] for key in job.asset_layer.executable_asset_keys} == {"fct_usage_monthly"}
