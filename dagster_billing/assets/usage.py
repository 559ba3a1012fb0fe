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
from dagster_billing.usage.hourly import read_hour
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
)
def usage_hourly(
    context: dg.AssetExecutionContext,
    config: UsageHourlyConfig,
    prometheus: PrometheusResource,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """One row per organization, metric and UTC hour in `dictamesh_billing_usage_metrics`,
    the exact sum of counter increments (storage: the hour's average GB). Re-running an
    hour replaces that hour's rows in one transaction; Prometheus failing writes nothing."""
    hour = context.partition_time_window.start
    try:
        reading = read_hour(
            prometheus,
            hour,
            timedelta(minutes=config.baseline_lookback_minutes),
            timedelta(hours=config.fallback_lookback_hours),
        )
    except PrometheusUnavailableError as exc:
        raise dg.Failure(
            description=f"usage_hourly {context.partition_key}: {exc}",
            allow_retries=True,
        ) from None
    with warehouse.engine().begin() as conn:
        written = write_hour(conn, reading, context.run_id)
    for reject in written.rejects:
        INGEST_REJECTS.labels(reject.metric, reject.reason).inc()
    if written.rejects:
        context.log.warning(
            f"{len(written.rejects)} usage samples/series rejected for {context.partition_key};"
            " see dictamesh_billing_usage_rejects"
        )
    return dg.MaterializeResult(
        metadata={
            "rows": written.rows_written,
            "rows_changed": written.rows_changed,
            "rejects": len(written.rejects),
            "adjustments": written.adjustments,
            "series": reading.series,
            "samples": reading.samples,
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
)
def usage_daily(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """`dictamesh_billing_usage_daily`: the day's 24 hours summed per organization and
    metric (storage in GB-hours, so a period's GB-month average is sum / hours)."""
    day = context.partition_time_window.start.date()
    with warehouse.engine().begin() as conn:
        rows = rollup_day(conn, day)
    return dg.MaterializeResult(metadata={"rows": rows})
