"""The one writer of outbox rows: every billing event is written in the caller's transaction.

The event id is a UUIDv5 of the dedupe key, so writing the same business event twice
(a re-run, a retry) is a no-op on either unique key, and the relay's Kafka key is stable.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

EVENT_NAMESPACE = uuid.UUID("6f1c2a4e-9a57-4f43-8d0e-3c1b7f0e2b61")


@dataclass(frozen=True)
class Event:
    event_type: str
    aggregate_type: str
    aggregate_id: str
    dedupe_key: str
    payload: Mapping[str, Any]
    occurred_at: datetime


# The external id of the organization an outbox row `o` belongs to (the Kafka key, the
# notification's addressee): the organization aggregate, or named in the payload (external
# id, or the warehouse id), or the invoice's; the aggregate id as a last resort.
ORGANIZATION_OF_EVENT = """coalesce(
    case when o.aggregate_type = 'organization' then o.aggregate_id end,
    o.payload ->> 'organization_external_id',
    case jsonb_typeof(o.payload -> 'organization_id')
        when 'string' then o.payload ->> 'organization_id'
        when 'number' then (
            select g.external_id from dictamesh_billing_organizations g
            where g.id = (o.payload ->> 'organization_id')::bigint)
    end,
    case when o.aggregate_type = 'invoice' then (
        select g.external_id from dictamesh_billing_invoices i
        join dictamesh_billing_organizations g on g.id = i.organization_id
        where i.id = o.aggregate_id::bigint)
    end,
    o.aggregate_id)"""

# One statement and one JSON parameter for a whole batch: thousands of bound rows or
# arrays cost more to adapt than json.dumps does to write.
_INSERT_EVENTS = sa.text(
    """
    insert into dictamesh_billing_outbox
        (event_id, event_type, aggregate_type, aggregate_id, dedupe_key, payload, occurred_at)
    select event_id, event_type, aggregate_type, aggregate_id, dedupe_key, payload, occurred_at
    from jsonb_to_recordset(cast(:events as jsonb)) as e(
        event_id uuid, event_type text, aggregate_type text, aggregate_id text,
        dedupe_key text, payload jsonb, occurred_at timestamptz)
    on conflict do nothing
    """
)


def event_id(dedupe_key: str) -> uuid.UUID:
    """The event id a dedupe key gets: the same business event always has the same id."""
    return uuid.uuid5(EVENT_NAMESPACE, dedupe_key)


def write_events(conn: Connection, events: Iterable[Event]) -> int:
    """Insert events, skipping any already written; returns how many were new."""
    rows = [
        {
            "event_id": str(event_id(e.dedupe_key)),
            "event_type": e.event_type,
            "aggregate_type": e.aggregate_type,
            "aggregate_id": e.aggregate_id,
            "dedupe_key": e.dedupe_key,
            "payload": dict(e.payload),
            "occurred_at": e.occurred_at.isoformat(),
        }
        for e in events
    ]
    if not rows:
        return 0
    return conn.execute(_INSERT_EVENTS, {"events": json.dumps(rows)}).rowcount


# The outbox's consumers besides the relay, each with the column that marks a row taken.
CONSUMER_MARKS = {"notifications": "notified_at", "webhooks": "webhooks_at"}


def take_events(conn: Connection, consumer: str, limit: int) -> list[Any]:
    """The oldest rows `consumer` has not taken, marked taken in the caller's transaction.

    Rows are locked with SKIP LOCKED, so two runs split the work instead of doing it
    twice; a run that rolls back leaves its rows for the next. A mark column, not a cursor
    on the id: a transaction that commits late can hold a smaller id than rows already
    read.
    """
    column = CONSUMER_MARKS[consumer]
    rows = conn.execute(
        sa.text(
            f"select o.id, o.event_id::text as event_id, o.event_type, o.payload,"
            f" o.occurred_at, {ORGANIZATION_OF_EVENT} as organization"
            f" from dictamesh_billing_outbox o where o.{column} is null"
            " order by o.id limit :limit for update of o skip locked"
        ),
        {"limit": limit},
    ).all()
    if rows:
        conn.execute(
            sa.text(f"update dictamesh_billing_outbox set {column} = now() where id = any(:ids)"),
            {"ids": [r.id for r in rows]},
        )
    return rows
