"""Schedules: when each job runs."""

import dagster as dg

warehouse_maintenance_job = dg.define_asset_job(
    "warehouse_maintenance", selection=dg.AssetSelection.assets("usage_partitions")
)

# Early in the day, so today's and the next week's partitions exist before ingestion needs them.
warehouse_maintenance_schedule = dg.ScheduleDefinition(
    job=warehouse_maintenance_job, cron_schedule="15 0 * * *", execution_timezone="UTC"
)

schedules = [warehouse_maintenance_schedule]
jobs = [warehouse_maintenance_job]
