"""The finance marts (issued ledger, revenue, recognition, deferred revenue) as one dbt
asset, built after invoices are finalized; each revenue mart's materialization carries a
small table preview, so finance can read the numbers in the UI."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import dbt_assets

from dagster_billing.assets.rating import DBT_POOL, BillingDbtTranslator, _build
from dagster_billing.dbt_project import billing_dbt_project
from dagster_billing.finance.preview import PREVIEW_ORDER, preview
from dagster_billing.resources import BillingDbtCliResource, RatingResource, WarehouseResource

FINANCE_MODELS = "tag:finance"


class FinanceDbtTranslator(BillingDbtTranslator):
    """The issued ledger reads what `invoices_finalized` writes: lineage says so."""

    def get_asset_spec(
        self, manifest: Mapping[str, Any], unique_id: str, project: Any
    ) -> dg.AssetSpec:
        spec = super().get_asset_spec(manifest, unique_id, project)
        node = manifest.get("nodes", {}).get(unique_id, {})
        if node.get("name") == "fct_issued_invoice_lines":
            spec = spec.merge_attributes(deps=[dg.AssetKey("invoices_finalized")])
        return spec


@dbt_assets(
    manifest=billing_dbt_project.manifest_path,
    project=billing_dbt_project,
    dagster_dbt_translator=FinanceDbtTranslator(),
    select=FINANCE_MODELS,
    name="finance_dbt_models",
    pool=DBT_POOL,
)
def finance_dbt_models(
    context: dg.AssetExecutionContext,
    dbt: BillingDbtCliResource,
    warehouse: WarehouseResource,
    rating: RatingResource,
):
    """`dbt build` of the finance marts with their tests; previews in the metadata."""
    for event in _build(context, dbt, warehouse, rating):
        if isinstance(event, dg.Output):
            mart = context.asset_key_for_output(event.output_name).path[-1]
            if mart in PREVIEW_ORDER:
                with warehouse.engine().connect() as conn:
                    table = preview(conn, warehouse.dbt_schema, mart)
                event = event.with_metadata(
                    {**event.metadata, "preview": dg.MetadataValue.md(table)}
                )
        yield event
