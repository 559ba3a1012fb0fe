"""The one `Definitions` object: assets, checks, jobs, schedules, sensors, resources."""

import dagster as dg

from dagster_billing.assets.catalog import billing_catalog
from dagster_billing.assets.finance import finance_dbt_models, rerate_diff
from dagster_billing.assets.invoicing import invoicing_assets, invoicing_checks
from dagster_billing.assets.rating import billing_dbt_models, billing_invoice_models
from dagster_billing.assets.usage import usage_daily, usage_hourly
from dagster_billing.assets.warehouse import usage_partitions
from dagster_billing.dbt_project import DBT_EXECUTABLE, billing_dbt_project
from dagster_billing.resources import (
    BillingDbtCliResource,
    InvoicingResource,
    PrometheusResource,
    RatingResource,
    WarehouseResource,
)
from dagster_billing.schedules import jobs, schedules
from dagster_billing.schedules.finance import finance_jobs, finance_schedules
from dagster_billing.sensors import sensors
from dagster_billing.settings import Settings, get_settings


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Resources from settings; a configured DSN is passed by name so it never shows in the UI."""
    dsn = dg.EnvVar("BILLING_DATABASE_DSN") if settings.billing_database_dsn else None
    return {
        "warehouse": WarehouseResource(dsn=dsn, data_dir=str(settings.billing_data_dir)),
        "rating": RatingResource.from_settings(settings),
        "prometheus": PrometheusResource(
            url=str(settings.prometheus_url) if settings.prometheus_url else None
        ),
        "dbt": BillingDbtCliResource(
            project_dir=billing_dbt_project,
            profiles_dir=str(billing_dbt_project.profiles_dir),
            dbt_executable=DBT_EXECUTABLE,
        ),
        "invoicing": InvoicingResource.from_settings(settings),
    }


defs = dg.Definitions(
    assets=[
        billing_catalog,
        usage_partitions,
        usage_hourly,
        usage_daily,
        billing_dbt_models,
        billing_invoice_models,
        *invoicing_assets,
        finance_dbt_models,
        rerate_diff,
    ],
    asset_checks=invoicing_checks,
    jobs=[*jobs, *finance_jobs],
    schedules=[*schedules, *finance_schedules],
    sensors=sensors,
    resources=build_resources(get_settings()),
)
