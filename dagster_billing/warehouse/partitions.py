"""Daily range partitions of `dictamesh_billing_usage_metrics`.

Daily, not monthly: retention is set in days (USAGE_RETENTION_DAYS), so a daily partition
is the smallest unit that can be dropped whole and on time, and re-ingesting an hour
touches one small partition. 90 days of retention is ~100 partitions, well within what
Postgres plans quickly. Expired data leaves by DROP TABLE, never by row DELETE.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

PARENT = "dictamesh_billing_usage_metrics"
_NAME = re.compile(rf"^{PARENT}_p(\d{{8}})$")
DAYS_AHEAD = 7


@dataclass(frozen=True)
class MaintenanceResult:
    created: list[str]
    dropped: list[str]
    # rows each dropped partition held: what the run reports, so no day leaves unsaid
    dropped_rows: dict[str, int] = field(default_factory=dict)


def partition_name(day: date) -> str:
    return f"{PARENT}_p{day:%Y%m%d}"


def existing_partitions(conn: Connection) -> dict[date, str]:
    """The daily partitions that exist now, by their first day."""
    names = conn.scalars(
        sa.text(
            "select c.relname from pg_inherits i"
            " join pg_class c on c.oid = i.inhrelid"
            " where i.inhparent = cast(:parent as regclass)"
        ),
        {"parent": PARENT},
    )
    found = {}
    for name in names:
        match = _NAME.match(name)
        if match:
            found[datetime.strptime(match.group(1), "%Y%m%d").date()] = name
    return found


def lock_partitions(conn: Connection) -> None:
    """Serialize maintenance and on-demand creation so concurrent runs never collide."""
    conn.execute(sa.text("select pg_advisory_xact_lock(hashtext(:key))"), {"key": PARENT})


def ensure_partitions(conn: Connection, first: date, last: date) -> list[str]:
    """Create the missing daily partitions for days first..last inclusive."""
    lock_partitions(conn)
    have = existing_partitions(conn)
    created = []
    day = first
    while day <= last:
        if day not in have:
            name = partition_name(day)
            start = datetime.combine(day, datetime.min.time(), UTC)
            conn.execute(
                sa.text(
                    f"create table {name} partition of {PARENT}"
                    f" for values from ('{start.isoformat()}') to"
                    f" ('{(start + timedelta(days=1)).isoformat()}')"
                )
            )
            created.append(name)
        day += timedelta(days=1)
    return created


def ensure_partitions_for(conn: Connection, start: datetime, end: datetime) -> list[str]:
    """Partitions covering the half-open window [start, end)."""
    return ensure_partitions(conn, start.date(), (end - timedelta(microseconds=1)).date())


def drop_expired_partitions(conn: Connection, now: datetime, retention_days: int) -> dict[str, int]:
    """Drop whole partitions whose every hour is older than the retention window; returns
    each dropped partition with the rows it held."""
    lock_partitions(conn)
    cutoff = (now - timedelta(days=retention_days)).date()
    dropped = {}
    for day, name in sorted(existing_partitions(conn).items()):
        if day + timedelta(days=1) <= cutoff:
            dropped[name] = conn.scalar(sa.text(f"select count(*) from {name}"))
            conn.execute(sa.text(f"drop table {name}"))
    return dropped


def maintain(
    conn: Connection, now: datetime, retention_days: int, days_ahead: int = DAYS_AHEAD
) -> MaintenanceResult:
    """Create today's and the next `days_ahead` partitions; drop the expired ones."""
    today = now.astimezone(UTC).date()
    created = ensure_partitions(conn, today, today + timedelta(days=days_ahead))
    dropped = drop_expired_partitions(conn, now, retention_days)
    return MaintenanceResult(created, list(dropped), dropped)
