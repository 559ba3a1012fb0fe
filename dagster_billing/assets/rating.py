"""The dbt models (pricing logic in SQL) as Dagster assets; dbt tests become asset checks."""

from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource, dbt_assets

from dagster_billing.dbt_project import billing_dbt_project
from dagster_billing.resources import WarehouseResource


class BillingDbtTranslator(DagsterDbtTranslator):
    """Groups follow the dbt layer, so the UI shows staging -> intermediate -> marts."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        return f"dbt_{fqn[1]}" if len(fqn) > 2 else "dbt"


@dbt_assets(
    manifest=billing_dbt_project.manifest_path,
    project=billing_dbt_project,
    dagster_dbt_translator=BillingDbtTranslator(),
)
def billing_dbt_models(
    context: dg.AssetExecutionContext, dbt: DbtCliResource, warehouse: WarehouseResource
):
    """`dbt build` of the selected models, with their tests as asset checks."""
    warehouse.export_dbt_env()
    yield from dbt.cli(["build"], context=context).stream()
