"""Schedules: when each job runs."""

from datetime import timedelta

import dagster as dg
from dagster_dbt import get_asset_key_for_model

from dagster_billing.assets.rating import billing_dbt_models, billing_invoice_models
from dagster_billing.partitions import daily_partitions, hourly_partitions

warehouse_maintenance_job = dg.define_asset_job(
    "warehouse_maintenance",
    selection=dg.AssetSelection.assets("usage_partitions", "outbox_retention"),
)

# Early in the day, so today's and the next week's partitions exist before ingestion needs them.
warehouse_maintenance_schedule = dg.ScheduleDefinition(
    job=warehouse_maintenance_job, cron_schedule="15 0 * * *", execution_timezone="UTC"
)

usage_hourly_job = dg.define_asset_job(
    "usage_hourly_job",
    selection=dg.AssetSelection.assets("usage_hourly"),
    partitions_def=hourly_partitions,
)
usage_daily_job = dg.define_asset_job(
    "usage_daily_job",
    selection=dg.AssetSelection.assets("usage_daily"),
    partitions_def=daily_partitions,
)

# Hours are re-ingested while they are this recent: scrapes and remote writes arrive late.
USAGE_TRAILING_HOURS = 3


def usage_hourly_trailing_schedule(
    trailing_hours: int = USAGE_TRAILING_HOURS,
) -> dg.ScheduleDefinition:
    """Five past each hour, (re-)ingest the last `trailing_hours` closed hours. Each run is
    idempotent, so an hour ingested again only changes if late samples arrived."""
    if trailing_hours < 1:
        raise ValueError(f"trailing_hours: must be >= 1, got {trailing_hours}")

    @dg.schedule(
        name="usage_hourly_trailing",
        job=usage_hourly_job,
        cron_schedule="5 * * * *",
        execution_timezone="UTC",
    )
    def _schedule(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        now = context.scheduled_execution_time.replace(minute=0, second=0, microsecond=0)
        first = hourly_partitions.start
        hours = [now - timedelta(hours=n) for n in range(trailing_hours, 0, -1)]
        return [
            dg.RunRequest(
                run_key=f"{hour:%Y-%m-%d-%H:%M}@{now:%Y-%m-%dT%H}",
                partition_key=f"{hour:%Y-%m-%d-%H:%M}",
            )
            for hour in hours
            if hour.timestamp() >= first.timestamp()
        ]

    return _schedule


# 02:30 for the day before: after the trailing window's last re-ingestion of 23:00 (02:05).
usage_daily_schedule = dg.build_schedule_from_partitioned_job(
    usage_daily_job, name="usage_daily_rollup", hour_of_day=2, minute_of_hour=30
)

# One run per billing day: rate it (the daily dbt models: drafts, MRR/ARR, revenue), then
# finalize, render and flag overdue. Dagster orders the steps by their dependencies.
invoicing_daily_job = dg.define_asset_job(
    "invoicing_daily",
    selection=dg.AssetSelection.assets(*billing_invoice_models.keys)
    | dg.AssetSelection.assets("invoices_finalized", "invoice_pdfs", "invoices_overdue"),
    partitions_def=daily_partitions,
)

# The previous UTC day at 03:30, after the usage rollup (02:30): every usage hour of the
# periods that end that day is in, late scrapes included.
invoicing_daily_schedule = dg.build_schedule_from_partitioned_job(
    invoicing_daily_job, hour_of_day=3, minute_of_hour=30
)

# Usage by organization and month, for finance: sums every stored hour, so once a day,
# after the invoicing run (03:30), not on the billing run's path.
usage_monthly_job = dg.define_asset_job(
    "usage_monthly",
    selection=dg.AssetSelection.assets(
        get_asset_key_for_model([billing_dbt_models], "fct_usage_monthly")
    ),
)
usage_monthly_schedule = dg.ScheduleDefinition(
    job=usage_monthly_job, cron_schedule="30 4 * * *", execution_timezone="UTC"
)

schedules = [
    warehouse_maintenance_schedule,
    usage_hourly_trailing_schedule(),
    usage_daily_schedule,
    invoicing_daily_schedule,
    usage_monthly_schedule,
]
jobs = [
    warehouse_maintenance_job,
    usage_hourly_job,
    usage_daily_job,
    invoicing_daily_job,
    usage_monthly_job,
]
