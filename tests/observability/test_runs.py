"""The run-failure sensor records each failed run once, where an operator sees it: an
outbox event (to Kafka and notifications) and the run-failure metric. And which
automations start enabled, as docs/operations.md says."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.definitions import defs
from dagster_billing.observability.collector import RUN_FAILED_EVENT
from dagster_billing.observability.runs import run_failure_sensor
from dagster_billing.partitions import daily_partitions
from dagster_billing.resources import WarehouseResource
from dagster_billing.warehouse import schema
from dagster_billing.warehouse.database import Warehouse
from tests.observability.test_metrics import scrape, value


@dg.asset(partitions_def=daily_partitions)
def card_service_call() -> None:
    raise RuntimeError("card service unreachable\nTraceback (most recent call last): ...")


def _failure_context(warehouse: Warehouse, tmp_path: Path) -> dg.RunFailureSensorContext:
    instance = dg.DagsterInstance.ephemeral()
    result = dg.materialize(
        [card_service_call], instance=instance, partition_key="2026-11-01", raise_on_error=False
    )
    assert not result.success
    return dg.build_run_status_sensor_context(
        sensor_name="run_failures",
        dagster_instance=instance,
        dagster_run=result.dagster_run,
        dagster_event=result.get_run_failure_event(),
        resources={
            "warehouse": WarehouseResource(dsn=warehouse.libpq_url(), data_dir=str(tmp_path))
        },
    ).for_run_failure()


def test_a_failed_run_becomes_one_event_and_counts_in_the_metric(
    warehouse: Warehouse, engine: Engine, tmp_path: Path
) -> None:
    with _failure_context(warehouse, tmp_path) as context:
        run_failure_sensor(context)
        run_failure_sensor(context)  # a second evaluation of the same run writes nothing
    with engine.connect() as conn:
        events = conn.execute(
            sa.select(schema.outbox).where(schema.outbox.c.event_type == RUN_FAILED_EVENT)
        ).all()
        unpublished = set(conn.scalars(sa.select(schema.outbox_unpublished.c.id)))
    (event,) = events
    run = context.dagster_run
    assert event.aggregate_type == "dagster_run"
    assert event.aggregate_id == run.run_id
    assert event.id in unpublished  # waiting for the relay
    assert event.payload["job_name"] == run.job_name
    assert event.payload["partition_key"] == "2026-11-01"
    assert event.payload["error"].startswith("Execution of run for")
    assert "\n" not in event.payload["error"]
    assert value(scrape(engine), "dagster_run_failures_total", job=run.job_name) == 1


def test_automations_that_start_enabled() -> None:
    """Schedules start stopped: each one bills, charges or needs Prometheus configured, so
    an operator starts them (docs/operations.md). The sensors that only record start
    running."""
    running = {
        s.name
        for s in [*defs.schedules, *defs.sensors]
        if s.default_status in (dg.DefaultScheduleStatus.RUNNING, dg.DefaultSensorStatus.RUNNING)
    }
    assert running == {"usage_thresholds", "run_failures"}
    assert "run_failures" in {s.name for s in defs.sensors}
