"""The finance marts (issued ledger, revenue, recognition, deferred revenue) as one dbt
asset, built after invoices are finalized; each revenue mart's materialization carries a
small table preview, so finance can read the numbers in the UI."""

from collections.abc import Mapping
from decimal import Decimal
from pathlib import Path
from typing import Any

import dagster as dg
from dagster_dbt import dbt_assets

from dagster_billing.assets.rating import DBT_POOL, BillingDbtTranslator, _build
from dagster_billing.catalog import DEFAULT_CATALOG, CatalogError
from dagster_billing.dbt_project import billing_dbt_project
from dagster_billing.finance import rerate as rr
from dagster_billing.finance.preview import PREVIEW_ORDER, markdown_table, preview
from dagster_billing.resources import BillingDbtCliResource, RatingResource, WarehouseResource
from dagster_billing.settings import ConfigError, Settings

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
                    {**event.metadata, "preview": dg.MarkdownMetadataValue(table)}
                )
        yield event


class RerateConfig(dg.Config):
    """A corrected catalog file and the billing dates [window_start, window_end) to check."""

    catalog_path: str = str(DEFAULT_CATALOG)
    window_start: str
    window_end: str
    organization: str | None = None


@dg.asset(group_name="finance", pool=DBT_POOL, kinds={"dbt", "postgres"})
def rerate_diff(
    config: RerateConfig, warehouse: WarehouseResource, rating: RatingResource
) -> dg.MaterializeResult:
    """What a corrected catalog would change on issued invoices, for finance to review in
    the UI before anyone runs `billing rerate --apply`; this asset applies nothing."""
    try:
        start = rr.parse_day(config.window_start, "window_start")
        end = rr.parse_day(config.window_end, "window_end")
        catalog = rr.load_corrected_catalog(Path(config.catalog_path))
    except (rr.RerateError, ConfigError, CatalogError) as exc:
        raise dg.Failure(str(exc)) from None
    # the same rating settings as the billing run (RatingResource), without the environment
    settings = Settings.model_construct(
        invoice_tax_rate=Decimal(rating.default_tax_rate),
        feature_tiered_pricing=rating.tiered_pricing,
        feature_credits=rating.credits_enabled,
    )
    diff = rr.diff(
        warehouse.engine(),
        warehouse.warehouse,
        settings,
        catalog,
        start,
        end,
        config.organization,
    )
    data = diff.as_json()
    rows = [
        (inv["invoice"], inv["organization"], inv["currency"], line["description"], *pair)
        for inv in data["invoices"]
        for line in inv["lines"]
        for pair in [(line["old"], line["new"], line["difference"])]
    ]
    columns = ["invoice", "organization", "currency", "line", "old", "new", "difference"]
    return dg.MaterializeResult(
        metadata={
            "catalog_version": diff.catalog_version,
            "invoices_changed": len(diff.invoices),
            "lines_changed": len(rows),
            "diff": dg.MarkdownMetadataValue(markdown_table(columns, rows)),
            "diff_json": dg.MetadataValue.json(data),
        }
    )


rerate_job = dg.define_asset_job(
    "rerate_review",
    selection=dg.AssetSelection.assets(rerate_diff),
    description="Re-rate a window under a corrected catalog; the diff is the asset.",
)
