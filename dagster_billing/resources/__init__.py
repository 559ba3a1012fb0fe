"""Resources: one per outside system, each built from settings in `definitions.py`."""

from dagster_billing.resources.dbt import BillingDbtCliResource
from dagster_billing.resources.invoicing import InvoicingResource
from dagster_billing.resources.prometheus import PrometheusResource, PrometheusUnavailableError
from dagster_billing.resources.rating import RatingResource
from dagster_billing.resources.warehouse import WarehouseResource

__all__ = [
    "BillingDbtCliResource",
    "InvoicingResource",
    "PrometheusResource",
    "PrometheusUnavailableError",
    "RatingResource",
    "WarehouseResource",
]
