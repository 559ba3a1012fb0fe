"""Outbox rows for invoicing events, written in the caller's transaction.

The event id is a UUIDv5 of the dedupe key, so writing the same business event twice
(a re-run, a retry) is a no-op on either unique key, and the relay's Kafka key is stable.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from dagster_billing.warehouse.schema import outbox

EVENT_NAMESPACE = uuid.UUID("6f1c2a4e-9a57-4f43-8d0e-3c1b7f0e2b61")


@dataclass(frozen=True)
class Event:
    event_type: str
    aggregate_type: str
    aggregate_id: str
    dedupe_key: str
    payload: Mapping[str, Any]
    occurred_at: datetime


def write_events(conn: Connection, events: Iterable[Event]) -> int:
    """Insert events, skipping any already written; returns how many were new."""
    rows = [
        {
            "event_id": uuid.uuid5(EVENT_NAMESPACE, event.dedupe_key),
            "event_type": event.event_type,
            "aggregate_type": event.aggregate_type,
            "aggregate_id": event.aggregate_id,
            "dedupe_key": event.dedupe_key,
            "payload": dict(event.payload),
            "occurred_at": event.occurred_at,
        }
        for event in events
    ]
    if not rows:
        return 0
    result = conn.execute(
        insert(outbox).on_conflict_do_nothing().returning(outbox.c.id),
        rows,
    )
    return len(result.all())
