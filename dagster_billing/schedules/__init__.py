"""Schedules: when each job runs."""

import dagster as dg

from dagster_billing.partitions import daily_partitions

warehouse_maintenance_job = dg.define_asset_job(
    "warehouse_maintenance", selection=dg.AssetSelection.assets("usage_partitions")
)

# Early in the day, so today's and the next week's partitions exist before ingestion needs them.
warehouse_maintenance_schedule = dg.ScheduleDefinition(
    job=warehouse_maintenance_job, cron_schedule="15 0 * * *", execution_timezone="UTC"
)

invoicing_daily_job = dg.define_asset_job(
    "invoicing_daily",
    selection=dg.AssetSelection.assets("invoices_finalized", "invoice_pdfs", "invoices_overdue"),
    partitions_def=daily_partitions,
)

# The previous UTC day, once its drafts are rated: finalize, render, flag overdue.
invoicing_daily_schedule = dg.build_schedule_from_partitioned_job(
    invoicing_daily_job, hour_of_day=2, minute_of_hour=0
)

schedules = [warehouse_maintenance_schedule, invoicing_daily_schedule]
jobs = [warehouse_maintenance_job, invoicing_daily_job]
