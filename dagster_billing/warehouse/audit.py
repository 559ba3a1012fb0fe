"""The append-only, hash-chained audit log.

The database computes each row's hash in a trigger (under an advisory lock, so the chain
never forks); `verify_chain` recomputes it here, independently, from the stored rows.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.warehouse.schema import audit_log

GENESIS_HASH = "0" * 64


def record(
    conn: Connection,
    *,
    actor: str,
    action: str,
    entity_type: str,
    entity_id: str,
    payload: Mapping[str, Any] | None = None,
) -> str:
    """Append one audit row in the caller's transaction; returns its hash."""
    return conn.execute(
        sa.insert(audit_log)
        .values(
            actor=actor,
            action=action,
            entity_type=entity_type,
            entity_id=entity_id,
            payload=dict(payload or {}),
        )
        .returning(audit_log.c.hash)
    ).scalar_one()


@dataclass(frozen=True)
class ChainReport:
    rows: int
    broken_at: int | None
    reason: str | None

    @property
    def ok(self) -> bool:
        return self.broken_at is None


_CANONICAL_ROWS = sa.text(
    """
    select id, prev_hash, hash,
           dictamesh_billing_audit_canonical(
               id, occurred_at, actor, action, entity_type, entity_id, payload) as canonical
    from dictamesh_billing_audit_log
    order by id
    """
)


def verify_chain(conn: Connection) -> ChainReport:
    """Walk the log in id order and check each link and each row's content hash."""
    expected_prev = GENESIS_HASH
    count = 0
    for row in conn.execute(_CANONICAL_ROWS).yield_per(10_000):
        count += 1
        if row.prev_hash != expected_prev:
            return ChainReport(count, row.id, "prev_hash does not match the previous row's hash")
        digest = hashlib.sha256((row.prev_hash + row.canonical).encode()).hexdigest()
        if digest != row.hash:
            return ChainReport(count, row.id, "content does not match its hash")
        expected_prev = row.hash
    return ChainReport(count, None, None)
