"""The audit log is append-only and its hash chain detects any rewrite."""

import itertools
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.warehouse import audit


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
