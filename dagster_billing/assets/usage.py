"""Usage assets: exact hourly usage from Prometheus, and the daily rollup rating reads."""

from datetime import timedelta

import dagster as dg
from prometheus_client import Counter

from dagster_billing.partitions import daily_partitions, hourly_partitions
from dagster_billing.resources import (
    PrometheusResource,
    PrometheusUnavailableError,
    WarehouseResource,
)
from dagster_billing.usage.hourly import HOUR, read_hour
from dagster_billing.usage.store import rollup_day, write_hour

INGEST_REJECTS = Counter(
    "dictamesh_billing_usage_ingest_rejects",
    "Samples and series usage_hourly refused to bill, by metric and reason.",
    ["metric", "reason"],
)

# Prometheus outages are usually short: retry with backoff before paging anyone.
PROMETHEUS_RETRY = dg.RetryPolicy(max_retries=3, delay=30, backoff=dg.Backoff.EXPONENTIAL)


class UsageHourlyConfig(dg.Config):
    baseline_lookback_minutes: int = 60
    fallback_lookback_hours: int = 24 * 7


@dg.asset(
    partitions_def=hourly_partitions,
    group_name="usage",
    kinds={"prometheus", "postgres"},
    retry_policy=PROMETHEUS_RETRY,
    backfill_policy=dg.BackfillPolicy.multi_run(max_partitions_per_run=24),
)
def usage_hourly(
    context: dg.AssetExecutionContext,
    config: UsageHourlyConfig,
    prometheus: PrometheusResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """One row per organization, metric and UTC hour in `dictamesh_billing_usage_metrics`,
    the exact sum of counter increments (storage: the hour's average GB). Re-running an
    hour replaces that hour's rows; a run (one hour, or up to a day in a backfill) reads
    every hour first and writes them in one transaction, so a Prometheus failure writes
    nothing."""
    window = context.partition_time_window
    label = f"{window.start:%Y-%m-%d-%H:%M}" + (
        f"..{window.end - HOUR:%Y-%m-%d-%H:%M}" if window.end - window.start > HOUR else ""
    )
    readings = []
    hour = window.start
    try:
        while hour < window.end:
            readings.append(
                read_hour(
                    prometheus,
                    hour,
                    timedelta(minutes=config.baseline_lookback_minutes),
                    timedelta(hours=config.fallback_lookback_hours),
                )
            )
            hour += HOUR
    except PrometheusUnavailableError as exc:
        raise dg.Failure(description=f"usage_hourly {label}: {exc}", allow_retries=True) from None
    with warehouse.engine().begin() as conn:
        written = [write_hour(conn, reading, context.run_id) for reading in readings]
    rejects = [reject for w in written for reject in w.rejects]
    for reject in rejects:
        INGEST_REJECTS.labels(reject.metric, reject.reason).inc()
    if rejects:
        context.log.warning(
            f"{len(rejects)} usage samples/series rejected for {label};"
            " see dictamesh_billing_usage_rejects"
        )
    return dg.MaterializeResult(
        metadata={
            "hours": len(readings),
            "rows": sum(w.rows_written for w in written),
            "rows_changed": sum(w.rows_changed for w in written),
            "rejects": len(rejects),
            "adjustments": sum(w.adjustments for w in written),
            "series": sum(r.series for r in readings),
            "samples": sum(r.samples for r in readings),
        }
    )


@dg.asset(
    partitions_def=daily_partitions,
    group_name="usage",
    kinds={"postgres"},
    ins={
        "usage_hourly": dg.AssetIn(
            partition_mapping=dg.TimeWindowPartitionMapping(), dagster_type=dg.Nothing
        )
    },
    backfill_policy=dg.BackfillPolicy.single_run(),
)
def usage_daily(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """`dictamesh_billing_usage_daily`: the day's 24 hours summed per organization and
    metric (storage in GB-hours, so a period's GB-month average is sum / hours)."""
    window = context.partition_time_window  # one day, or a backfill's whole range
    day, rows = window.start, 0
    with warehouse.engine().begin() as conn:
        while day < window.end:
            rows += rollup_day(conn, day.date())
            day += timedelta(days=1)
    return dg.MaterializeResult(metadata={"rows": rows})
