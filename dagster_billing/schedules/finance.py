"""The finance marts once a day, after the invoicing run has finalized the day's invoices
(03:30) and monthly usage is rebuilt (04:30); and the re-rating review job."""

import dagster as dg

from dagster_billing.assets.finance import finance_dbt_models, rerate_job

finance_marts_job = dg.define_asset_job(
    "finance_marts", selection=dg.AssetSelection.assets(finance_dbt_models)
)
finance_marts_schedule = dg.ScheduleDefinition(
    job=finance_marts_job, cron_schedule="45 4 * * *", execution_timezone="UTC"
)

finance_jobs = [finance_marts_job, rerate_job]
finance_schedules = [finance_marts_schedule]
