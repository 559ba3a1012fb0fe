"""The append-only, hash-chained audit log.

The database computes each row's hash in a trigger (under an advisory lock, so the chain
never forks); `verify_chain` recomputes it here, independently, from the stored rows.
A chain proves nothing about rows cut from its end, so its head is also recorded outside
the table (`Checkpoint`: the `audit_checkpoint` asset's metadata in the Dagster instance,
and what `billing audit checkpoint` prints for an operator to keep); `verify_chain`
given a checkpoint also requires that row, unchanged.
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


@dataclass(frozen=True)
class Checkpoint:
    """The chain's head at one moment: its last row's id and hash (0 and the genesis
    hash while the log is empty), and how many rows the chain had."""

    head_id: int
    head_hash: str
    rows: int

    def __str__(self) -> str:
        return f"{self.head_id}:{self.head_hash}"

    @classmethod
    def parse(cls, text: str) -> Checkpoint:
        """`ID:HASH` as printed by `billing audit checkpoint` (rows are not part of it)."""
        head_id, _, head_hash = text.strip().partition(":")
        if not head_id.isdigit() or len(head_hash) != 64:
            raise ValueError(f"checkpoint: expected ID:HASH (64 hex digits), got {text!r}")
        return cls(int(head_id), head_hash.lower(), 0)


def chain_head(conn: Connection) -> Checkpoint:
    """The current head; under the chain's own advisory lock, so no insert is half done."""
    conn.execute(sa.text("select pg_advisory_xact_lock(hashtext('dictamesh_billing_audit_log'))"))
    row = conn.execute(
        sa.select(audit_log.c.id, audit_log.c.hash).order_by(audit_log.c.id.desc()).limit(1)
    ).first()
    rows = conn.scalar(sa.select(sa.func.count()).select_from(audit_log))
    if row is None:
        return Checkpoint(0, GENESIS_HASH, 0)
    return Checkpoint(row.id, row.hash, rows)


_CANONICAL_ROWS = sa.text(
    """
    select id, prev_hash, hash,
           dictamesh_billing_audit_canonical(
               id, occurred_at, actor, action, entity_type, entity_id, payload) as canonical
    from dictamesh_billing_audit_log
    order by id
    """
)


def verify_chain(conn: Connection, checkpoint: Checkpoint | None = None) -> ChainReport:
    """Walk the log in id order and check each link and each row's content hash; with a
    checkpoint, its head row must still be there with the same hash."""
    expected_prev = GENESIS_HASH
    count = 0
    head_seen = checkpoint is None or checkpoint.head_id == 0
    for row in conn.execute(_CANONICAL_ROWS).yield_per(10_000):
        count += 1
        if row.prev_hash != expected_prev:
            return ChainReport(count, row.id, "prev_hash does not match the previous row's hash")
        digest = hashlib.sha256((row.prev_hash + row.canonical).encode()).hexdigest()
        if digest != row.hash:
            return ChainReport(count, row.id, "content does not match its hash")
        if checkpoint is not None and row.id == checkpoint.head_id:
            if row.hash != checkpoint.head_hash:
                return ChainReport(count, row.id, f"hash differs from the checkpoint {checkpoint}")
            head_seen = True
        expected_prev = row.hash
    if not head_seen:
        assert checkpoint is not None
        return ChainReport(
            count,
            checkpoint.head_id,
            f"row {checkpoint.head_id} of the checkpoint {checkpoint} is missing: "
            "the chain was cut at its end",
        )
    return ChainReport(count, None, None)
