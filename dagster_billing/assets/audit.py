"""The audit chain's head, kept outside the table it protects.

A hash chain proves every row up to its end, but not where the end was: rows cut from the
end (triggers bypassed) leave a shorter chain that is still intact. Each materialization
of `audit_checkpoint` stores the head (id, hash, rows) in the Dagster instance's event
log, another database from the warehouse's tables; `billing audit verify` compares the
chain with the latest one.
"""

import dagster as dg

from dagster_billing.resources import WarehouseResource
from dagster_billing.warehouse.audit import Checkpoint, chain_head

AUDIT_CHECKPOINT = dg.AssetKey("audit_checkpoint")


def checkpoint_metadata(head: Checkpoint) -> dict[str, dg.MetadataValue]:
    return {
        "head_id": dg.MetadataValue.int(head.head_id),
        "head_hash": dg.MetadataValue.text(head.head_hash),
        "rows": dg.MetadataValue.int(head.rows),
    }


@dg.asset(group_name="audit", kinds={"postgres"})
def audit_checkpoint(warehouse: WarehouseResource) -> dg.MaterializeResult:
    """Record the audit chain's head in the Dagster instance (head_id, head_hash, rows)."""
    with warehouse.engine().begin() as conn:
        head = chain_head(conn)
    return dg.MaterializeResult(metadata=checkpoint_metadata(head))


def record_checkpoint(instance: dg.DagsterInstance, head: Checkpoint) -> None:
    """What the asset records, from outside a run (`billing audit checkpoint`)."""
    instance.report_runless_asset_event(
        dg.AssetMaterialization(asset_key=AUDIT_CHECKPOINT, metadata=checkpoint_metadata(head))
    )


def latest_checkpoint(instance: dg.DagsterInstance) -> Checkpoint | None:
    """The head recorded last, by the asset or the command; None before the first."""
    event = instance.get_latest_materialization_event(AUDIT_CHECKPOINT)
    if event is None or event.asset_materialization is None:
        return None
    metadata = event.asset_materialization.metadata
    return Checkpoint(
        int(metadata["head_id"].value),
        str(metadata["head_hash"].value),
        int(metadata["rows"].value),
    )


audit_checkpoint_job = dg.define_asset_job("audit_checkpoint_job", selection=[audit_checkpoint])

# Hourly: a cut is caught unless it removes only rows written since the last checkpoint.
audit_checkpoint_schedule = dg.ScheduleDefinition(
    job=audit_checkpoint_job, cron_schedule="50 * * * *", execution_timezone="UTC"
)
