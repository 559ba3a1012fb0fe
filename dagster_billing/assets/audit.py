"""The audit chain's head, kept outside the table it protects.

A hash chain proves every row up to its end, but not where the end was: rows cut from the
end (triggers bypassed) leave a shorter chain that is still intact. Each materialization
of `audit_checkpoint` stores the head (id, hash, rows) in the Dagster instance's event
log, another database from the warehouse's tables; `billing audit verify` compares the
chain with the latest one. One Dagster instance can serve several warehouses on one server
(each its own database), so a checkpoint names its warehouse and is read back only for it.
"""

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.resources import WarehouseResource
from dagster_billing.warehouse.audit import Checkpoint, chain_head

AUDIT_CHECKPOINT = dg.AssetKey("audit_checkpoint")


# How far back `latest_checkpoint` looks past other warehouses' checkpoints.
SEARCHED_CHECKPOINTS = 200


def checkpoint_metadata(head: Checkpoint, warehouse: str) -> dict[str, dg.MetadataValue]:
    return {
        "warehouse": dg.MetadataValue.text(warehouse),
        "head_id": dg.MetadataValue.int(head.head_id),
        "head_hash": dg.MetadataValue.text(head.head_hash),
        "rows": dg.MetadataValue.int(head.rows),
    }


@dg.asset(group_name="audit", kinds={"postgres"})
def audit_checkpoint(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Record the audit chain's head in the Dagster instance (head_id, head_hash, rows)."""
    with warehouse.engine().begin() as conn:
        head = chain_head(conn)
        name = warehouse_name(conn)
    return dg.MaterializeResult(metadata=checkpoint_metadata(head, name))


def warehouse_name(conn: Connection) -> str:
    """The warehouse's database name: what tells its checkpoints from another's."""
    return str(conn.scalar(sa.text("select current_database()")))


def record_checkpoint(instance: dg.DagsterInstance, head: Checkpoint, warehouse: str) -> None:
    """What the asset records, from outside a run (`billing audit checkpoint`)."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=AUDIT_CHECKPOINT, metadata=checkpoint_metadata(head, warehouse)
        )
    )


def latest_checkpoint(instance: dg.DagsterInstance, warehouse: str) -> Checkpoint | None:
    """The head recorded last for this warehouse, by the asset or the command; None
    before the first."""
    records = instance.fetch_materializations(AUDIT_CHECKPOINT, limit=SEARCHED_CHECKPOINTS)
    for record in records.records:
        materialization = record.asset_materialization
        if materialization is None:
            continue
        metadata = materialization.metadata
        if "warehouse" in metadata and metadata["warehouse"].value == warehouse:
            return Checkpoint(
                int(metadata["head_id"].value),
                str(metadata["head_hash"].value),
                int(metadata["rows"].value),
            )
    return None


audit_checkpoint_job = dg.define_asset_job("audit_checkpoint_job", selection=[audit_checkpoint])

# Hourly: a cut is caught unless it removes only rows written since the last checkpoint.
audit_checkpoint_schedule = dg.ScheduleDefinition(
    job=audit_checkpoint_job, cron_schedule="50 * * * *", execution_timezone="UTC"
)
