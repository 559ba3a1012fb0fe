"""The one `Definitions` object: assets, checks, jobs, schedules, sensors, resources."""

import dagster as dg

from dagster_billing.assets.audit import (
    audit_checkpoint,
    audit_checkpoint_job,
    audit_checkpoint_schedule,
)
from dagster_billing.assets.catalog import billing_catalog
from dagster_billing.assets.events import (
    events_assets,
    events_jobs,
    events_schedules,
    events_sensors,
)
from dagster_billing.assets.finance import finance_dbt_models, rerate_diff
from dagster_billing.assets.invoicing import invoicing_assets, invoicing_checks
from dagster_billing.assets.payments import payments_assets, payments_checks
from dagster_billing.assets.rating import billing_dbt_models, billing_invoice_models
from dagster_billing.assets.usage import usage_daily, usage_hourly
from dagster_billing.assets.warehouse import usage_partitions
from dagster_billing.dbt_project import DBT_EXECUTABLE, billing_dbt_project
from dagster_billing.observability.runs import TracedWarehouseResource
from dagster_billing.rating.lineage import finalized_invoice_tables
from dagster_billing.resources import (
    BillingDbtCliResource,
    InvoicingResource,
    PrometheusResource,
    RatingResource,
)
from dagster_billing.resources.kafka import KafkaResource
from dagster_billing.resources.notifications import NotificationsResource
from dagster_billing.resources.smtp import SmtpResource
from dagster_billing.resources.stripe import StripeResource
from dagster_billing.schedules import jobs, schedules
from dagster_billing.schedules.finance import finance_jobs, finance_schedules
from dagster_billing.sensors import sensors
from dagster_billing.sensors.payments import payments_job, payments_sensors
from dagster_billing.settings import Settings, get_settings


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """Resources from settings; a configured DSN is passed by name so it never shows in the UI.
    The warehouse resource is the traced one: with OTEL_* unset it is the plain resource."""
    dsn = dg.EnvVar("BILLING_DATABASE_DSN") if settings.billing_database_dsn else None
    return {
        "warehouse": TracedWarehouseResource(
            dsn=dsn,
            data_dir=str(settings.billing_data_dir),
            usage_retention_days=settings.usage_retention_days,
        ),
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
        "kafka": KafkaResource.from_settings(settings),
        "smtp": SmtpResource.from_settings(settings),
        "notifications": NotificationsResource.from_settings(settings),
        "stripe": StripeResource.from_settings(settings),
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
        *finalized_invoice_tables,
        *events_assets,
        audit_checkpoint,
        *payments_assets,
        finance_dbt_models,
        rerate_diff,
    ],
    asset_checks=[*invoicing_checks, *payments_checks],
    jobs=[*jobs, *events_jobs, audit_checkpoint_job, payments_job, *finance_jobs],
    schedules=[*schedules, *events_schedules, audit_checkpoint_schedule, *finance_schedules],
    sensors=[*sensors, *events_sensors, *payments_sensors],
    resources=build_resources(get_settings()),
)
