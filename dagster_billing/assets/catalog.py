"""The catalog tables, loaded from the versioned catalog file.

Their asset keys are the dbt sources' keys, so the staging models hang off them in
the asset graph.
"""

import dagster as dg

from dagster_billing.catalog import load_catalog
from dagster_billing.catalog.sync import catalog_rows, sync_catalog
from dagster_billing.resources import WarehouseResource

CATALOG_KEYS = [dg.AssetKey(["billing", table.name]) for table in catalog_rows(load_catalog())]


@dg.multi_asset(
    specs=[dg.AssetSpec(key, group_name="catalog", kinds={"postgres"}) for key in CATALOG_KEYS],
    can_subset=False,
)
def billing_catalog(warehouse: WarehouseResource):
    """Upsert the default catalog; re-running changes nothing unless the file changed."""
    catalog = load_catalog()
    with warehouse.engine().begin() as conn:
        changed = sync_catalog(conn, catalog)
    for key in CATALOG_KEYS:
        yield dg.MaterializeResult(
            asset_key=key,
            metadata={"catalog_version": catalog.version, "rows_changed": changed[key.path[-1]]},
        )
