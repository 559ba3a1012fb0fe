"""The audit log is append-only and its hash chain detects any rewrite."""

import itertools
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.assets.audit import audit_checkpoint, latest_checkpoint, record_checkpoint
from dagster_billing.resources import WarehouseResource
from dagster_billing.warehouse import audit
from dagster_billing.warehouse.database import Warehouse
from tests.test_cli import billing as run


def _append(engine: Engine, n: int, actor: str = "test") -> None:
    with engine.begin() as conn:
        for i in range(n):
            audit.record(
                conn,
                actor=actor,
                action="invoice.voided",
                entity_type="invoice",
                entity_id=str(i),
                payload={"reason": "duplicate", "n": i},
            )


def test_each_row_chains_to_the_previous_one(engine: Engine) -> None:
    _append(engine, 3)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("select prev_hash, hash from dictamesh_billing_audit_log order by id")
        ).all()
        assert audit.verify_chain(conn).ok
    for previous, current in itertools.pairwise(rows):
        assert current.prev_hash == previous.hash


@pytest.mark.parametrize(
    "statement",
    [
        "update dictamesh_billing_audit_log set actor = 'mallory'",
        "delete from dictamesh_billing_audit_log",
        "truncate dictamesh_billing_audit_log",
    ],
)
def test_update_delete_and_truncate_are_refused(engine: Engine, statement: str) -> None:
    _append(engine, 1)
    with pytest.raises(sa.exc.DBAPIError, match="append-only"), engine.begin() as conn:
        conn.execute(sa.text(statement))


def test_verify_finds_a_row_rewritten_behind_the_trigger(engine: Engine) -> None:
    _append(engine, 4)
    with engine.begin() as conn:
        target = conn.scalar(sa.text("select max(id) - 1 from dictamesh_billing_audit_log"))
        conn.execute(sa.text("alter table dictamesh_billing_audit_log disable trigger user"))
        conn.execute(
            sa.text("update dictamesh_billing_audit_log set actor = 'mallory' where id = :id"),
            {"id": target},
        )
        conn.execute(sa.text("alter table dictamesh_billing_audit_log enable trigger user"))
        report = audit.verify_chain(conn)
        conn.rollback()
    assert report.broken_at == target
    assert report.reason == "content does not match its hash"


def test_concurrent_writers_never_fork_the_chain(engine: Engine) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(lambda w: _append(engine, 25, actor=f"writer-{w}"), range(4)))
    with engine.connect() as conn:
        report = audit.verify_chain(conn)
    assert report.ok, report
    assert report.rows >= 100


def _cut_the_newest_row(engine: Engine) -> int:
    """What someone with table rights can do: drop the last row behind the triggers."""
    with engine.begin() as conn:
        newest = conn.scalar(sa.text("select max(id) from dictamesh_billing_audit_log"))
        conn.execute(sa.text("alter table dictamesh_billing_audit_log disable trigger user"))
        conn.execute(
            sa.text("delete from dictamesh_billing_audit_log where id = :id"), {"id": newest}
        )
        conn.execute(sa.text("alter table dictamesh_billing_audit_log enable trigger user"))
    return newest


def test_a_checkpoint_catches_rows_cut_from_the_end(engine: Engine) -> None:
    _append(engine, 3)
    with engine.begin() as conn:
        head = audit.chain_head(conn)
        conn.execute(sa.text("alter table dictamesh_billing_audit_log disable trigger user"))
        conn.execute(
            sa.text("delete from dictamesh_billing_audit_log where id = :id"), {"id": head.head_id}
        )
        cut = audit.verify_chain(conn, head)
        assert audit.verify_chain(conn).ok  # the shorter chain is intact: why a checkpoint
        conn.rollback()
    assert cut.broken_at == head.head_id
    assert cut.reason == (
        f"row {head.head_id} of the checkpoint {head} is missing: the chain was cut at its end"
    )
    with engine.connect() as conn:
        assert audit.verify_chain(conn, head).ok
        forged = audit.Checkpoint(head.head_id, "f" * 64, head.rows)
        assert (
            audit.verify_chain(conn, forged).reason == f"hash differs from the checkpoint {forged}"
        )


def test_the_checkpoint_asset_records_the_head_in_the_dagster_instance(
    engine: Engine, warehouse: Warehouse, tmp_path: Path
) -> None:
    _append(engine, 2)
    with engine.begin() as conn:
        head = audit.chain_head(conn)
    resource = WarehouseResource(dsn=warehouse.libpq_url(), data_dir=str(tmp_path))
    with dg.instance_for_test() as instance:
        assert latest_checkpoint(instance, warehouse.url.database) is None
        result = dg.materialize(
            [audit_checkpoint], instance=instance, resources={"warehouse": resource}
        )
        assert result.success
        assert latest_checkpoint(instance, warehouse.url.database) == head
        # A checkpoint of another warehouse sharing the instance is not this one's.
        record_checkpoint(instance, audit.Checkpoint(1, "0" * 64, 1), "another_warehouse")
        assert latest_checkpoint(instance, warehouse.url.database) == head


def test_audit_verify_compares_the_chain_with_the_latest_checkpoint(
    engine: Engine, warehouse: Warehouse
) -> None:
    _append(engine, 2)
    recorded = run("audit", "checkpoint", dsn=warehouse.libpq_url())
    assert recorded.returncode == 0, recorded.stderr
    with engine.begin() as conn:
        head = audit.chain_head(conn)
    assert recorded.stdout.strip() == f"audit checkpoint {head} ({head.rows} rows)"
    intact = run("audit", "verify", dsn=warehouse.libpq_url())
    assert intact.returncode == 0, intact.stderr
    assert intact.stdout.strip() == f"audit log intact: {head.rows} rows, checkpoint {head} present"

    _cut_the_newest_row(engine)
    cut = run("audit", "verify", dsn=warehouse.libpq_url())
    assert cut.returncode == 1
    assert cut.stderr.strip() == (
        f"audit log broken at id {head.head_id}: row {head.head_id} of the checkpoint {head}"
        " is missing: the chain was cut at its end"
    )
    kept = run("audit", "verify", "--checkpoint", str(head), dsn=warehouse.libpq_url())
    assert kept.returncode == 1
    bad = run("audit", "verify", "--checkpoint", "12", dsn=warehouse.libpq_url())
    assert (bad.returncode, bad.stderr.strip()) == (
        2,
        "error: checkpoint: expected ID:HASH (64 hex digits), got '12'",
    )
