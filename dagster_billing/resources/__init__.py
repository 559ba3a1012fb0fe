"""Resources: one per outside system, each built from settings in `definitions.py`."""

from dagster_billing.resources.invoicing import InvoicingResource
from dagster_billing.resources.warehouse import WarehouseResource

__all__ = ["InvoicingResource", "WarehouseResource"]
