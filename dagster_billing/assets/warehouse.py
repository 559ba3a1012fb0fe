"""Warehouse upkeep: usage partitions created ahead of time, expired ones dropped whole."""

from datetime import UTC, datetime

import dagster as dg

from dagster_billing.resources import WarehouseResource
from dagster_billing.warehouse.partitions import maintain


class PartitionMaintenanceConfig(dg.Config):
    retention_days: int = 90
    days_ahead: int = 7
    as_of: str | None = None  # ISO instant; defaults to now (backfills and tests pin it)


@dg.asset(group_name="warehouse", kinds={"postgres"})
def usage_partitions(
    config: PartitionMaintenanceConfig, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Keep `dictamesh_billing_usage_metrics` partitioned a week ahead and within retention."""
    now = datetime.fromisoformat(config.as_of) if config.as_of else datetime.now(UTC)
    with warehouse.engine().begin() as conn:
        result = maintain(conn, now, config.retention_days, config.days_ahead)
    return dg.MaterializeResult(
        metadata={
            "created": dg.MetadataValue.json(result.created),
            "dropped": dg.MetadataValue.json(result.dropped),
        }
    )
