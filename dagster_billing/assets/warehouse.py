"""Warehouse upkeep: usage partitions created ahead of time, expired ones dropped whole."""

from datetime import UTC, datetime

import dagster as dg

from dagster_billing.resources import WarehouseResource
from dagster_billing.warehouse.partitions import maintain


class PartitionMaintenanceConfig(dg.Config):
    retention_days: int | None = None  # unset: USAGE_RETENTION_DAYS, via the resource
    days_ahead: int = 7
    as_of: str | None = None  # ISO instant; defaults to now (backfills and tests pin it)


@dg.asset(group_name="warehouse", kinds={"postgres"})
def usage_partitions(
    context: dg.AssetExecutionContext,
    config: PartitionMaintenanceConfig,
    warehouse: WarehouseResource,
) -> dg.MaterializeResult:
    """Keep `dictamesh_billing_usage_metrics` partitioned a week ahead and within retention.

    Every dropped day is logged and reported with its row count: usage leaves the
    warehouse only where an operator can see it leave."""
    now = datetime.fromisoformat(config.as_of) if config.as_of else datetime.now(UTC)
    retention_days = config.retention_days or warehouse.usage_retention_days
    with warehouse.engine().begin() as conn:
        result = maintain(conn, now, retention_days, config.days_ahead)
    for name, rows in result.dropped_rows.items():
        context.log.info(f"dropped {name}: {rows} usage rows older than {retention_days} days")
    return dg.MaterializeResult(
        metadata={
            "retention_days": retention_days,
            "created": dg.MetadataValue.json(result.created),
            "dropped": dg.MetadataValue.json(result.dropped),
            "dropped_rows": dg.MetadataValue.json(result.dropped_rows),
        }
    )
