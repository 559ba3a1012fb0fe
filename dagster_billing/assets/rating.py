"""The dbt models (pricing logic in SQL) as Dagster assets; dbt tests become asset checks.

Two assets split by partitioning: the billing models (tag `billing_daily`: the
intermediate rating models, the draft-invoice marts and the marts built from them,
MRR/ARR and revenue) are built per daily billing partition, the partition window passed
as session settings (`window_options`), and a backfill of many days is one dbt
invocation over the whole window (single-run backfill policy), not one per day.
Staging and the dimensions are views (always current: the invoices' tests compare with
dim_organizations) and monthly usage a table (`usage_monthly_schedule`), unpartitioned.
"""

import json
from collections.abc import Mapping
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, dbt_assets

from dagster_billing.dbt_project import billing_dbt_project
from dagster_billing.partitions import daily_partitions
from dagster_billing.resources import BillingDbtCliResource, RatingResource, WarehouseResource
from dagster_billing.resources.rating import window_options

INVOICE_MODELS = "tag:billing_daily"
# Unit tests check the SQL, not the data: CI runs them (tests/test_dbt.py), a billing
# run does not pay for them every day. Nor for writing manifest.json twice and
# run_results.json (~1 s): Dagster records each node's result, and the manifest it reads
# is the one `dbt parse` wrote (dbt_project.py).
BUILD_FLAGS = ("--exclude-resource-type", "unit_test", "--no-write-json")
# One dbt at a time on the warehouse (dagster_home/dagster.yaml limits the pool to 1):
# concurrent runs would rebuild the same tables.
DBT_POOL = "dbt_warehouse"
# the longest usage period (a month) before a billing date
USAGE_LOOKBACK_DAYS = 31


class BillingDbtTranslator(DagsterDbtTranslator):
    """Groups follow the dbt layer, so the UI shows staging -> intermediate -> marts."""

    def get_group_name(self, dbt_resource_props: Mapping[str, Any]) -> str | None:
        fqn = dbt_resource_props.get("fqn", [])
        return f"dbt_{fqn[1]}" if len(fqn) > 2 else "dbt"

    def get_partition_mapping(
        self, dbt_resource_props: Mapping[str, Any], dbt_parent_resource_props: Mapping[str, Any]
    ) -> dg.PartitionMapping | None:
        """The invoices billed on a day rate usage periods that end that day and began up
        to a month before: they read the daily usage rollups of the 31 days before it."""
        if dbt_parent_resource_props.get("name") == "dictamesh_billing_usage_daily":
            return dg.TimeWindowPartitionMapping(start_offset=-USAGE_LOOKBACK_DAYS, end_offset=-1)
        return None


def _build(
    context: dg.AssetExecutionContext,
    dbt: BillingDbtCliResource,
    warehouse: WarehouseResource,
    rating: RatingResource,
    session: Mapping[str, str] | None = None,
):
    """`dbt build` of the asset's selection, tests included, against `warehouse`, with
    `session` (window_options) in its environment."""
    args = ["build", *BUILD_FLAGS, "--vars", json.dumps(rating.dbt_vars())]
    yield from dbt.build(args, context=context, env={**warehouse.dbt_env(), **(session or {})})


@dbt_assets(
    manifest=billing_dbt_project.manifest_path,
    project=billing_dbt_project,
    dagster_dbt_translator=BillingDbtTranslator(),
    exclude=f"{INVOICE_MODELS} tag:finance",
    pool=DBT_POOL,
)
def billing_dbt_models(
    context: dg.AssetExecutionContext,
    dbt: BillingDbtCliResource,
    warehouse: WarehouseResource,
    rating: RatingResource,
):
    """`dbt build` of the unpartitioned models, with their tests as asset checks."""
    yield from _build(context, dbt, warehouse, rating)


@dbt_assets(
    manifest=billing_dbt_project.manifest_path,
    project=billing_dbt_project,
    dagster_dbt_translator=BillingDbtTranslator(),
    select=INVOICE_MODELS,
    name="billing_invoice_models",
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    pool=DBT_POOL,
)
def billing_invoice_models(
    context: dg.AssetExecutionContext,
    dbt: BillingDbtCliResource,
    warehouse: WarehouseResource,
    rating: RatingResource,
):
    """Draft invoices for the billing dates in the run's partition window [start, end)."""
    window = context.partition_time_window
    yield from _build(context, dbt, warehouse, rating, window_options(window.start, window.end))
