"""Dagster runs as operators see them: a span per asset run, and failed runs recorded.

`TracedWarehouseResource` is the warehouse resource with a span around each execution
that uses it (every asset here does): one span per step under the multiprocess executor
that daemon-launched runs use, one per run under the in-process executor, named after the
job and carrying the run id, the assets and the partition key; its engine's statements
are child spans. Without OTEL_* configuration it is exactly the warehouse resource.

The run-failure sensor writes one `billing.dagster_run.failed` outbox event per failed
run (dedupe key: the run id), so the failure reaches Kafka and notifications through the
relay, and `dictamesh_billing_dagster_run_failures_total{job}` counts it from the
warehouse.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import dagster as dg
from sqlalchemy.engine import Engine

from dagster_billing.events import catalog
from dagster_billing.events.outbox import Event, write_events
from dagster_billing.observability import tracing
from dagster_billing.resources import WarehouseResource

SERVICE_NAME = "dictamesh-billing-dagster"
# Dagster's own tags for what a run covers.
PARTITION_TAG = "dagster/partition"
RANGE_START_TAG = "dagster/asset_partition_range_start"
RANGE_END_TAG = "dagster/asset_partition_range_end"
ERROR_CHARS = 500


def partition_label(tags: Mapping[str, str]) -> str | None:
    """The run's partition key, or `start...end` for a single-run backfill range."""
    if PARTITION_TAG in tags:
        return tags[PARTITION_TAG]
    if RANGE_START_TAG in tags:
        return f"{tags[RANGE_START_TAG]}...{tags.get(RANGE_END_TAG, tags[RANGE_START_TAG])}"
    return None


def run_attributes(run: Any) -> dict[str, Any]:
    """Span attributes of a DagsterRun: what ran, and for which partition."""
    assets = sorted(key.to_user_string() for key in (run.asset_selection or ()))
    return {
        "dagster.run_id": run.run_id,
        "dagster.job_name": run.job_name,
        "dagster.partition_key": partition_label(run.tags),
        "dagster.asset_keys": assets or None,
    }


class TracedWarehouseResource(WarehouseResource):
    """The warehouse resource, with a span over the execution that uses it."""

    @contextmanager
    def yield_for_execution(
        self, context: dg.InitResourceContext
    ) -> Generator[TracedWarehouseResource, None, None]:
        tracing.configure_tracing(SERVICE_NAME)
        run = context.dagster_run
        if not tracing.tracing_enabled() or run is None:
            with super().yield_for_execution(context) as resource:
                yield resource
            return
        # The step that initialized the resource: the asset under the multiprocess executor.
        metadata = getattr(context.log, "metadata", None) or {}
        step = metadata.get("step_key")
        attributes = run_attributes(run) | {"dagster.step_key": step}
        with (
            tracing.span(f"dagster.run {step or run.job_name}", attributes=attributes),
            super().yield_for_execution(context) as resource,
        ):
            yield resource

    def engine(self) -> Engine:
        return tracing.instrument_engine(super().engine())


def run_failure_event(run: Any, message: str | None, at: datetime) -> Event:
    """The outbox event for one failed run; the message is cut short (a stack trace
    belongs in the Dagster UI, which the payload links to by run id)."""
    first_line = (message or "").strip().splitlines()[:1]
    return catalog.dagster_run_failed(
        run_id=run.run_id,
        job_name=run.job_name,
        partition_key=partition_label(run.tags),
        error=first_line[0][:ERROR_CHARS] if first_line else None,
        failed_at=at,
    )


@dg.run_failure_sensor(
    name="run_failures",
    default_status=dg.DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=30,
)
def run_failure_sensor(context: dg.RunFailureSensorContext, warehouse: WarehouseResource) -> None:
    """Every failed run of this code location becomes a `billing.dagster_run.failed` outbox
    event (once: its dedupe key is the run id) and counts in
    `dictamesh_billing_dagster_run_failures_total{job}`."""
    run = context.dagster_run
    message = context.failure_event.message if context.failure_event else None
    with warehouse.engine().begin() as conn:
        written = write_events(conn, [run_failure_event(run, message, datetime.now(UTC))])
    context.log.info(f"run {run.run_id} of {run.job_name} failed; {written} event written")
