"""`dbt build` runs green against the warehouse, through the Dagster assets."""

import dagster as dg
import sqlalchemy as sa
from dagster_dbt import DbtCliResource

from dagster_billing.assets.rating import billing_dbt_models
from dagster_billing.dbt_project import billing_dbt_project
from dagster_billing.definitions import build_resources
from dagster_billing.resources import WarehouseResource
from dagster_billing.settings import load_settings
from dagster_billing.warehouse.database import Warehouse, make_engine


def test_dbt_build_is_green_and_checks_pass(warehouse: Warehouse) -> None:
    dbt = build_resources(load_settings())["dbt"]
    assert isinstance(dbt, DbtCliResource)
    resources = {
        "dbt": dbt,
        "warehouse": WarehouseResource(dsn=warehouse.libpq_url(), data_dir="unused"),
    }
    result = dg.materialize([billing_dbt_models], resources=resources)
    assert result.success
    evaluations = result.get_asset_check_evaluations()
    assert evaluations and all(e.passed for e in evaluations)
    with make_engine(warehouse).connect() as conn:
        tiers = conn.scalar(
            sa.text(
                "select count(*) from analytics_staging.stg_billing__pricing_tiers"
                " where currency = 'JPY'"
            )
        )
    assert tiers == 11
    assert billing_dbt_project.manifest_path.exists()
