"""Bulk usage import: CSV or JSON Lines through COPY, validated in SQL, merged in one go.

The file streams byte for byte into a temporary table (COPY is the fastest way into
Postgres and Python never parses a row); SQL checks every row at once and names the line
and field of each problem; valid rows are deduplicated and upserted into the partitioned
usage table. A file with bad rows loads nothing unless `skip_invalid`: half a file is
harder to repair than none.

A large CSV file first tries a parallel path (_import_parallel) that uses two connections
and skips the per-row problem report; any row it cannot prove valid sends the file through
the full check above, so both give the same result.
"""

from __future__ import annotations

import csv
import hashlib
import io
from collections import Counter
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.usage.store import record_adjustments
from dagster_billing.warehouse.partitions import (
    PARENT,
    ensure_partitions,
    existing_partitions,
    lock_partitions,
    partition_name,
)

COLUMNS = ("organization", "metric", "hour", "timestamp", "quantity", "idempotency_key")
REQUIRED = ("organization", "metric", "quantity")
CHUNK = 1 << 20


@dataclass(frozen=True)
class AcceptedHours:
    """The instants an import may write: none older than the retention window (the next
    partition maintenance would drop them) and none further in the future than clock skew
    explains. The messages name the setting behind each bound."""

    earliest: datetime
    latest: datetime
    too_old: str
    too_new: str


def accepted_hours(now: datetime, retention_days: int, max_skew_minutes: int) -> AcceptedHours:
    """[now - USAGE_RETENTION_DAYS, now + USAGE_MAX_CLOCK_SKEW_MINUTES]."""
    earliest = now - timedelta(days=retention_days)
    latest = now + timedelta(minutes=max_skew_minutes)
    return AcceptedHours(
        earliest,
        latest,
        f"before {earliest:%Y-%m-%dT%H:%M:%SZ}, outside the {retention_days} days of usage"
        " kept (USAGE_RETENTION_DAYS)",
        f"after {latest:%Y-%m-%dT%H:%M:%SZ}, in the future by more than {max_skew_minutes}"
        " min (USAGE_MAX_CLOCK_SKEW_MINUTES)",
    )


# Library callers that pass no window still refuse what no partition can hold.
UNBOUNDED = AcceptedHours(
    datetime.min.replace(tzinfo=UTC),
    datetime.max.replace(tzinfo=UTC),
    "not a finite time",
    "not a finite time",
)


def _window_params(window: AcceptedHours) -> dict[str, Any]:
    return {
        "earliest": window.earliest,
        "latest": window.latest,
        "too_old": window.too_old,
        "too_new": window.too_new,
    }


class UsageImportError(Exception):
    """The file cannot be imported as a whole (format, header, or bad rows)."""

    def __init__(self, message: str, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.problems = problems or []


@dataclass
class ImportResult:
    rows_read: int = 0
    rows_invalid: int = 0
    rows_duplicate: int = 0
    rows_written: int = 0
    adjustments: int = 0
    problems: list[str] = field(default_factory=list)


def _format(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return "csv"
    if suffix in (".jsonl", ".ndjson", ".json"):
        return "jsonl"
    raise UsageImportError(f"{path.name}: unknown format; use .csv or .jsonl")


def _csv_header(path: Path) -> list[str]:
    with path.open(newline="", encoding="utf-8") as handle:
        first = handle.readline()
    header = next(csv.reader(io.StringIO(first)), [])
    names = [name.strip() for name in header]
    unknown = [name for name in names if name not in COLUMNS]
    if unknown:
        raise UsageImportError(
            f"{path.name}: line 1: unknown column {unknown[0]!r} (expected {', '.join(COLUMNS)})"
        )
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise UsageImportError(f"{path.name}: line 1: missing column {missing[0]!r}")
    if "hour" not in names and "timestamp" not in names:
        raise UsageImportError(f"{path.name}: line 1: needs an 'hour' or 'timestamp' column")
    if len(set(names)) != len(names):
        raise UsageImportError(f"{path.name}: line 1: a column is named twice")
    return names


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _stream(
    conn: Connection, path: Path, copy_sql: str, span: tuple[int, int] | None = None
) -> None:
    """COPY the file's bytes (or the byte range `span`) as they are. COPY's own errors (a
    row with the wrong number of fields) name the line."""
    start, end = span or (0, path.stat().st_size)
    cursor = conn.connection.driver_connection.cursor()
    try:
        with cursor.copy(copy_sql) as copy, path.open("rb") as handle:
            handle.seek(start)
            while start < end and (chunk := handle.read(min(CHUNK, end - start))):
                start += len(chunk)
                copy.write(chunk)
    except Exception as exc:
        context = getattr(getattr(exc, "diag", None), "context", None) or ""
        line = (
            context.rsplit("line ", 1)[-1].split(",")[0].split(":")[0]
            if "line " in context
            else "?"
        )
        reason = str(exc).splitlines()[0]
        raise UsageImportError(f"{path.name}: line {line}: malformed row: {reason}") from None


def _load(conn: Connection, path: Path) -> None:
    """Fill temp table `usage_import_stage` (line, organization, ..., idempotency_key)."""
    columns = ", ".join(f"{name} text" for name in COLUMNS)
    if _format(path) == "csv":
        names = _csv_header(path)
        conn.execute(
            sa.text(
                "create temp table usage_import_stage (line bigint generated always as identity"
                f" (start with 2), {columns}) on commit drop"
            )
        )
        _stream(
            conn,
            path,
            f"copy usage_import_stage ({', '.join(names)}) from stdin (format csv, header true)",
        )
        return
    conn.execute(
        sa.text(
            "create temp table usage_import_lines (line bigint generated always as identity,"
            " doc text) on commit drop"
        )
    )
    # JSON never contains raw control characters, so \x01 and \x02 can be delimiter and
    # quote: each line arrives verbatim, backslashes included.
    _stream(
        conn,
        path,
        "copy usage_import_lines (doc) from stdin (format csv, delimiter e'\\x01', quote e'\\x02')",
    )
    fields = ", ".join(
        f"case when j.ok and jsonb_typeof(j.d) = 'object' then j.d ->> '{name}' end as {name}"
        for name in COLUMNS
    )
    conn.execute(
        sa.text(
            f"create temp table usage_import_stage on commit drop as select l.line, {fields},"
            " case when l.doc is null or btrim(l.doc) = '' then 'blank'"
            " when not j.ok and nonfinite is not null then nonfinite[1] || ': ' || nonfinite[2]"
            " || ' is not a JSON number (JSON has no NaN or Infinity; give a finite number)'"
            " when not j.ok or jsonb_typeof(j.d) <> 'object' then 'json' end as json_problem"
            " from usage_import_lines l cross join lateral (select"
            " coalesce(dictamesh_billing_is_valid(l.doc, 'jsonb'), false) as ok) v"
            " cross join lateral (select v.ok, case when v.ok then cast(l.doc as jsonb) end as d) j"
            " cross join lateral (select case when not v.ok then regexp_match(l.doc,"
            ' \'"([^"\\\\]*)"\\s*:\\s*(-?Infinity|NaN)\\M\') end as nonfinite) n'
        )
    )


_HOURS = """
create temp table usage_import_hours on commit drop as
select t, at, date_trunc('hour', at, 'UTC') as hour_start,
       date_trunc('hour', at, 'UTC') = at as aligned
from (
    select t, case when dictamesh_billing_is_valid(t, 'timestamptz')
                   then cast(t as timestamptz) end as at
    from (select distinct coalesce(hour, "timestamp") as t from usage_import_stage) d
) parsed
"""

# Distinct hours are parsed once each; per row only hash joins and a numeric parse remain
# (a regular expression per row would cost more than the COPY).
_CHECK = """
create temp table usage_import_checked on commit drop as
with rows as (
    select s.line, s.organization, s.metric, s.quantity, s.idempotency_key, {json}
           s.hour, s."timestamp", o.id as organization_id, m.id as metric_id,
           h.hour_start, h.at, h.aligned, parsed.q
    from usage_import_stage s
    left join dictamesh_billing_organizations o on o.external_id = s.organization
    left join dictamesh_billing_metrics m on m.id = s.metric
    left join usage_import_hours h on h.t = coalesce(s.hour, s."timestamp")
    -- offset 0 keeps the subquery from being inlined into each of q's eight uses
    cross join lateral (
        select case when dictamesh_billing_is_valid(s.quantity, 'numeric')
                    then cast(s.quantity as numeric) end as q
        offset 0
    ) parsed
)
select line, organization_id, metric, hour_start,
       case when q >= 0 and q < 1e18 and scale(q) <= 6
                 and at >= cast(:earliest as timestamptz) and at <= cast(:latest as timestamptz)
            then cast(q as numeric(24, 6)) end
           as quantity,
       nullif(idempotency_key, '') as idempotency_key,
       false as duplicate,
       case
           {json_case}
           when coalesce(organization, '') = '' then 'organization: required'
           when organization_id is null
               then 'organization: unknown organization ' || quote_literal(organization)
           when coalesce(metric, '') = '' then 'metric: required'
           when metric_id is null then 'metric: unknown metric ' || quote_literal(metric)
           when hour is null and "timestamp" is null then 'hour: required (hour or timestamp)'
           when at is null then
               (case when hour is not null then 'hour' else 'timestamp' end)
               || ': not a timestamp, got ' || quote_literal(coalesce(hour, "timestamp"))
           when hour is not null and not aligned
               then 'hour: must be the start of an hour, got ' || quote_literal(hour)
           when at < cast(:earliest as timestamptz) then
               (case when hour is not null then 'hour' else 'timestamp' end) || ': '
               || :too_old || ', got ' || quote_literal(coalesce(hour, "timestamp"))
           when at > cast(:latest as timestamptz) then
               (case when hour is not null then 'hour' else 'timestamp' end) || ': '
               || :too_new || ', got ' || quote_literal(coalesce(hour, "timestamp"))
           when coalesce(quantity, '') = '' then 'quantity: required'
           when q is null then 'quantity: not a number, got ' || quote_literal(quantity)
           when q in ('NaN', 'Infinity', '-Infinity')
               then 'quantity: must be a finite number, got ' || quote_literal(quantity)
           when q < 0 then 'quantity: must be >= 0, got ' || quote_literal(quantity)
           when q >= 1e18
               then 'quantity: must be less than 10^18 (the column is numeric(24, 6)), got '
                    || quote_literal(quantity)
           when scale(q) > 6
               then 'quantity: at most 6 decimals (the column is numeric(24, 6)), got '
                    || quote_literal(quantity)
       end as problem
from rows
"""

VALID = "problem is null and not duplicate"

# Repeats of one organization, metric and hour: an identical row (same quantity and key)
# is a duplicate and skipped; anything else conflicts with the first and is invalid.
_DUPLICATES = """
update usage_import_checked c set
    duplicate = d.same,
    problem = case when d.same then null
                   else 'organization, metric, hour: conflicts with line ' || d.first_line end
from (
    select line, first_line, same from (
        select line,
               first_value(line) over w as first_line,
               quantity = first_value(quantity) over w
                   and idempotency_key is not distinct from first_value(idempotency_key) over w
                   as same,
               row_number() over w as n
        from usage_import_checked
        where problem is null and (hour_start, organization_id, metric) in (
            select hour_start, organization_id, metric from usage_import_checked
            where problem is null group by 1, 2, 3 having count(*) > 1)
        window w as (partition by hour_start, organization_id, metric order by line)
    ) ranked where n > 1
) d
where c.line = d.line
"""

# One idempotency key names one row: a key repeated for different values is a conflict.
_KEY_REUSE = """
select line, first_line from (
    select c.line,
           first_value(c.line) over w as first_line,
           (c.organization_id, c.metric, c.hour_start, c.quantity) is distinct from (
               first_value(c.organization_id) over w, first_value(c.metric) over w,
               first_value(c.hour_start) over w, first_value(c.quantity) over w) as differs
    from usage_import_checked c
    where c.problem is null and c.idempotency_key in (
        select idempotency_key from usage_import_checked
        where problem is null and idempotency_key is not null
        group by idempotency_key having count(*) > 1)
    window w as (partition by c.idempotency_key order by c.line)
) k where differs
"""


# Imports with more rows than this rebuild their days and swap them in (see _build).
SWAP_THRESHOLD = 20_000
# CSV files larger than this (about SWAP_THRESHOLD rows) try the parallel path first.
PARALLEL_BYTES = 1 << 20
# Connections of the parallel path: each stages a part of the file and builds some days.
WORKERS = 2

_DIFFERS = (
    "(u.quantity, u.source, u.idempotency_key) is distinct from"
    " (r.quantity, 'import', r.idempotency_key)"
)


def _unique(conn: Connection, ddl: str) -> bool:
    """Whether a unique index builds: the cheap proof that no row repeats a key."""
    try:
        with conn.begin_nested():
            conn.execute(sa.text(ddl))
    except sa.exc.IntegrityError:
        return False
    return True


def _upsert(conn: Connection) -> int:
    """Small imports: upsert row by row; returns the rows inserted or changed."""
    return conn.execute(
        sa.text(
            "insert into dictamesh_billing_usage_metrics as u (organization_id, metric,"
            " hour_start, quantity, source, idempotency_key)"
            " select organization_id, metric, hour_start, quantity, 'import', idempotency_key"
            f" from usage_import_checked where {VALID}"
            " on conflict (organization_id, metric, hour_start) do update"
            " set quantity = excluded.quantity, source = excluded.source,"
            " idempotency_key = excluded.idempotency_key, ingested_at = now()"
            " where (u.quantity, u.source, u.idempotency_key) is distinct from"
            " (excluded.quantity, excluded.source, excluded.idempotency_key)"
        )
    ).rowcount


def _lock_days(conn: Connection, days: set[date]) -> dict[date, str]:
    """Hold partition creation and the existing partitions of `days` against writers (not
    readers) until commit, so nothing written meanwhile is lost when a day is swapped;
    returns those partitions by day. Days are locked in order: two imports cannot deadlock.
    """
    lock_partitions(conn)
    existing = {day: name for day, name in existing_partitions(conn).items() if day in days}
    for day in sorted(existing):
        conn.execute(sa.text(f"lock table {existing[day]} in exclusive mode"))
    return existing


def _build(
    conn: Connection,
    target: str,
    days: list[date],
    existing: dict[date, str],
    rows_sql: str,
    params: dict[str, Any],
) -> tuple[int, int]:
    """Fill fresh tables for `days`, partitions of `target`, with the import's rows
    (`rows_sql`: organization_id, metric, hour_start, quantity, idempotency_key) and the
    rows of the day the import does not mention; returns the import's rows and how many
    of them changed (stamped `:now`).

    A row-by-row insert into the partitioned table pays two foreign-key checks and two
    index insertions per row (~30k rows/s). Here the rows go into tables without indexes,
    each index is then built by one sort, and ATTACH PARTITION (_swap) checks the foreign
    keys with one join per day; the range CHECK spares ATTACH a scan.
    """
    conn.execute(
        sa.text(
            f"create table {target} (like {PARENT} including defaults including constraints)"
            " partition by range (hour_start)"
        )
    )
    for day in days:
        table, (start, end) = f"{target}_{day:%Y%m%d}", _bounds(day)
        conn.execute(
            sa.text(
                f"create table {table} partition of {target} for values from ('{start}')"
                f" to ('{end}'); alter table {table} add constraint {table}_range"
                f" check (hour_start >= '{start}' and hour_start < '{end}')"
            )
        )
    merged = sorted(day for day in days if day in existing)
    stamp, join = ":now", ""
    if merged:
        stamp = (
            f"case when u.source is not null and not {_DIFFERS} then u.ingested_at else :now end"
        )
        join = (
            f" left join {PARENT} u on u.organization_id = r.organization_id"
            " and u.metric = r.metric and u.hour_start = r.hour_start"
            f" and u.hour_start >= '{_bounds(merged[0])[0]}'"
            f" and u.hour_start < '{_bounds(merged[-1])[1]}'"
        )
    written = conn.execute(
        sa.text(
            f"insert into {target} select r.organization_id, r.metric, r.hour_start,"
            f" r.quantity, 'import', r.idempotency_key, {stamp} from ({rows_sql}) r{join}"
        ),
        params,
    ).rowcount
    changed = written
    if merged:
        changed = conn.scalar(
            sa.text(f"select count(*) from {target} where ingested_at = :now"), params
        )
    for day in merged:
        table = f"{target}_{day:%Y%m%d}"
        conn.execute(
            sa.text(
                f"insert into {table} select u.* from {existing[day]} u where not exists"
                f" (select from {table} n where n.organization_id = u.organization_id"
                " and n.metric = u.metric and n.hour_start = u.hour_start)"
            )
        )
    conn.execute(
        sa.text(
            f"alter table {target} add primary key (organization_id, metric, hour_start);"
            f" create index on {target} (hour_start)"
        )
    )
    return written, changed


def _adjust(conn: Connection, target: str, now: datetime) -> int:
    """Record adjustments for the changed rows of `target`, before _swap replaces the
    rows they change."""
    return record_adjustments(
        conn,
        "select n.organization_id, n.metric, n.hour_start,"
        " coalesce(u.quantity, 0) as old_quantity, n.quantity as new_quantity"
        f" from {target} n left join {PARENT} u on u.organization_id = n.organization_id"
        " and u.metric = n.metric and u.hour_start = n.hour_start where n.ingested_at = :now",
        {"now": now},
        "import",
    )


def _swap(conn: Connection, target: str, days: list[date], existing: dict[date, str]) -> None:
    """Put the tables _build filled in place of the days' partitions, named like them."""
    for day in days:
        table, name, (start, end) = f"{target}_{day:%Y%m%d}", partition_name(day), _bounds(day)
        old = (
            f" alter table {PARENT} detach partition {name}; drop table {name};"
            if day in existing
            else ""
        )
        conn.execute(
            sa.text(
                f"alter table {target} detach partition {table};{old}"
                f" alter table {table} rename to {name};"
                f" alter index {table}_pkey rename to {name}_pkey;"
                f" alter index {table}_hour_start_idx rename to {name}_hour_start_idx;"
                f" alter table {PARENT} attach partition {name}"
                f" for values from ('{start}') to ('{end}');"
                f" alter table {name} drop constraint {table}_range"
            )
        )
    conn.execute(sa.text(f"drop table {target}"))
    # the swap bypasses the usage table's triggers: mark the days' rollups out of date
    conn.execute(
        sa.text("select dictamesh_billing_usage_days_written(cast(:days as date[]))"),
        {"days": days},
    )


def _bounds(day: date) -> tuple[str, str]:
    start = datetime.combine(day, time(), UTC)
    return start.isoformat(), (start + timedelta(days=1)).isoformat()


def _validate(conn: Connection, is_jsonl: bool, window: AcceptedHours) -> None:
    """Fill `usage_import_checked`: every row with its problem (null when valid)."""
    conn.execute(sa.text(_HOURS))
    conn.execute(
        sa.text(
            _CHECK.replace("{json}", "s.json_problem," if is_jsonl else "").replace(
                "{json_case}",
                "when json_problem = 'blank' then 'line: blank'"
                " when json_problem = 'json' then 'line: not a JSON object'"
                " when json_problem is not null then json_problem"
                if is_jsonl
                else "",
            )
        ),
        _window_params(window),
    )
    row_key = "usage_import_checked (hour_start, organization_id, metric) where problem is null"
    if not _unique(conn, f"create unique index usage_import_row on {row_key}"):
        conn.execute(sa.text(_DUPLICATES))
        conn.execute(sa.text(f"create index usage_import_row on {row_key}"))
    key = (
        "usage_import_checked (idempotency_key)"
        " where problem is null and idempotency_key is not null"
    )
    if not _unique(conn, f"create unique index usage_import_key on {key} and not duplicate"):
        conn.execute(
            sa.text(
                "update usage_import_checked c set problem = 'idempotency_key: used by line '"
                f" || r.first_line || ' for a different row' from ({_KEY_REUSE}) r"
                " where c.line = r.line"
            )
        )
    conn.execute(sa.text("analyze usage_import_checked"))


class _NotProvenError(Exception):
    """The parallel path cannot show the file is valid: the full check decides."""


def _spans(path: Path) -> list[tuple[int, int]]:
    """WORKERS byte ranges of the file, cut at line ends; the first holds the header. A cut
    inside a quoted field leaves an unterminated quote, which COPY rejects."""
    size = path.stat().st_size
    cuts = [0]
    with path.open("rb") as handle:
        for k in range(1, WORKERS):
            handle.seek(max(size * k // WORKERS, cuts[-1]))
            handle.readline()
            cuts.append(handle.tell())
    return list(zip(cuts, [*cuts[1:], size], strict=True))


def _drop_scratch(engine: sa.Engine, token: str) -> None:
    """Drop the committed scratch tables of this import and of imports whose session
    ended before they could (a crash, or a caller that rolled back)."""
    with engine.connect() as conn:
        tables = conn.scalars(
            sa.text(
                "select c.oid::regclass::text from pg_class c"
                " cross join lateral substring(c.relname from '^usage_import_([0-9]+)_') m(pid)"
                " where c.relkind in ('r', 'p') and not c.relispartition"
                " and c.relnamespace = cast(current_schema() as regnamespace)"
                " and (c.relname like :token || '\\_%'"
                " or cast(m.pid as int) not in (select pid from pg_stat_activity))"
            ),
            {"token": token},
        ).all()
        for table in tables:
            conn.execute(sa.text(f"drop table if exists {table}"))
        conn.commit()


def _stage(engine: sa.Engine, path: Path, names: list[str], table: str, k: int) -> Counter:
    """COPY part k of the file into `table` (typed quantity: COPY rejects a non-number);
    returns its rows per hour text."""
    columns = ", ".join(
        f"{name} numeric" if name == "quantity" else f"{name} text" for name in COLUMNS
    )
    with engine.connect() as conn:
        conn.execute(sa.text(f"create unlogged table {table} ({columns})"))
        _stream(
            conn,
            path,
            f"copy {table} ({', '.join(names)}) from stdin (format csv, header {k == 0})",
            _spans(path)[k],
        )
        counts = Counter(
            dict(
                conn.execute(
                    sa.text(f'select coalesce(hour, "timestamp"), count(*) from {table} group by 1')
                ).all()
            )
        )
        conn.commit()
    return counts


def _hour_starts(conn: Connection, texts: list[str | None], aligned: bool) -> dict[str, datetime]:
    """Each distinct hour text with its hour; _NotProvenError when one is not a timestamp (or not
    the start of an hour, for the `hour` column)."""
    starts = dict(
        conn.execute(
            sa.text(
                "select t, case when isfinite(at) and (not :aligned"
                " or date_trunc('hour', at, 'UTC') = at) then date_trunc('hour', at, 'UTC') end"
                " from (select t, case when dictamesh_billing_is_valid(t, 'timestamptz')"
                " then cast(t as timestamptz) end as at"
                " from unnest(cast(:texts as text[])) t) parsed"
            ),
            {"texts": texts, "aligned": aligned},
        ).all()
    )
    if None in starts or None in starts.values():
        raise _NotProvenError
    return starts


def _keys_repeat(engine: sa.Engine, staged: str) -> bool:
    with engine.connect() as conn:
        return bool(
            conn.scalar(
                sa.text(
                    f"select exists (select from ({staged}) s where idempotency_key <> ''"
                    " group by idempotency_key having count(*) > 1)"
                )
            )
        )


def _build_part(
    engine: sa.Engine,
    token: str,
    k: int,
    days: list[date],
    existing: dict[date, str],
    starts: dict[str, datetime],
    now: datetime,
) -> tuple[int, int]:
    """_build on a connection of its own, committed so the caller's transaction can swap
    the days in. Unknown organizations and out-of-range quantities are left out, so the
    count shows them; an unknown metric fails the foreign key at ATTACH; a repeated row
    fails the primary key."""
    staged = " union all ".join(f"select * from {token}_s{j}" for j in range(WORKERS))
    hours = {t: start for t, start in starts.items() if start.date() in days}
    with engine.connect() as conn:
        # Joins in the written order: the hour join first drops the other part's days
        # before the organization join looks at them (~20% of the insert).
        conn.execute(
            sa.text(
                "set local timezone = 'UTC'; set local synchronous_commit = off;"
                " set local join_collapse_limit = 1"
            )
        )
        counts = _build(
            conn,
            f"{token}_t{k}",
            days,
            existing,
            "select o.id as organization_id, s.metric, h.hour_start, s.quantity,"
            " nullif(s.idempotency_key, '') as idempotency_key"
            f" from ({staged}) s join unnest(cast(:texts as text[]),"
            " cast(:starts as timestamptz[])) h (t, hour_start)"
            ' on h.t = coalesce(s.hour, s."timestamp")'
            " join dictamesh_billing_organizations o on o.external_id = s.organization"
            " where s.quantity >= 0 and s.quantity < 1e18 and scale(s.quantity) <= 6",
            {"texts": list(hours), "starts": list(hours.values()), "now": now},
        )
        conn.commit()
    return counts


def _import_parallel(
    conn: Connection,
    path: Path,
    names: list[str],
    token: str,
    now: datetime,
    window: AcceptedHours,
) -> ImportResult | None:
    """A valid file in WORKERS parts: each connection COPYs a part into an unlogged table,
    then builds the partitions of some of the days from all parts; the caller's transaction
    swaps each part's days in as soon as it is ready, so swapping (and the foreign-key
    checks of ATTACH) overlaps the other's building. Returns None, with nothing changed,
    when the file has a row that needs the full check (which names the line)."""
    if "hour" in names and "timestamp" in names:
        return None
    engine = conn.engine
    _drop_scratch(engine, token)
    result = ImportResult()
    try:
        with ThreadPoolExecutor(WORKERS) as pool:
            per_hour = sum(
                pool.map(lambda k: _stage(engine, path, names, f"{token}_s{k}", k), range(WORKERS)),
                Counter(),
            )
            starts = _hour_starts(conn, list(per_hour), aligned="hour" in names)
            # an hour that reaches past a bound may hold a refused instant: full check
            if any(
                start < window.earliest or start + timedelta(hours=1) > window.latest
                for start in starts.values()
            ):
                raise _NotProvenError
            staged = " union all ".join(f"select * from {token}_s{j}" for j in range(WORKERS))
            if "idempotency_key" in names and _keys_repeat(engine, staged):
                raise _NotProvenError
            rows_per_day = Counter[date]()
            for t, n in per_hour.items():
                rows_per_day[starts[t].date()] += n
            shares: list[list[date]] = [[] for _ in range(WORKERS)]
            loads = [0] * WORKERS
            for day, n in rows_per_day.most_common():
                k = loads.index(min(loads))
                shares[k].append(day)
                loads[k] += n
            existing = _lock_days(conn, set(rows_per_day))
            futures = {
                pool.submit(
                    _build_part, engine, token, k, sorted(shares[k]), existing, starts, now
                ): k
                for k in range(WORKERS)
            }
            with conn.begin_nested():
                for future in as_completed(futures):
                    k = futures[future]
                    written, changed = future.result()
                    if written != loads[k]:
                        raise _NotProvenError
                    result.adjustments += _adjust(conn, f"{token}_t{k}", now)
                    _swap(conn, f"{token}_t{k}", sorted(shares[k]), existing)
                    result.rows_written += changed
                conn.execute(
                    sa.text(f"drop table {', '.join(f'{token}_s{k}' for k in range(WORKERS))}")
                )
    except (_NotProvenError, UsageImportError, sa.exc.SQLAlchemyError):
        _drop_scratch(engine, token)
        return None
    result.rows_read = sum(loads)
    return result


def import_usage(
    conn: Connection,
    path: Path,
    skip_invalid: bool = False,
    max_problems: int = 100,
    window: AcceptedHours = UNBOUNDED,
) -> ImportResult:
    """Import `path` in the caller's transaction; raises UsageImportError (nothing
    written) when rows are bad and `skip_invalid` is false. Rows outside `window` are
    bad rows; `billing usage import` passes `accepted_hours(...)` from the settings."""
    conn.execute(sa.text("set local timezone = 'UTC'"))  # a timestamp without offset is UTC
    is_jsonl = _format(path) == "jsonl"
    names = None if is_jsonl else _csv_header(path)
    token = f"usage_import_{conn.scalar(sa.text('select pg_backend_pid()'))}"
    now = conn.scalar(sa.text("select now()"))
    with ThreadPoolExecutor(1) as pool:
        digest = pool.submit(_sha256, path)
        result = (
            _import_parallel(conn, path, names, token, now, window)
            if names and path.stat().st_size > PARALLEL_BYTES
            else None
        ) or _import_checked(conn, path, is_jsonl, skip_invalid, max_problems, token, now, window)
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_usage_imports (file_name, file_sha256, rows_read,"
                " rows_invalid, rows_duplicate, rows_written) values (:name, :sha, :read,"
                " :invalid, :duplicate, :written)"
            ),
            {
                "name": path.name,
                "sha": digest.result(),
                "read": result.rows_read,
                "invalid": result.rows_invalid,
                "duplicate": result.rows_duplicate,
                "written": result.rows_written,
            },
        )
    return result


def _import_checked(
    conn: Connection,
    path: Path,
    is_jsonl: bool,
    skip_invalid: bool,
    max_problems: int,
    token: str,
    now: datetime,
    window: AcceptedHours,
) -> ImportResult:
    """The full check: every row staged as text with its line, every problem named."""
    _load(conn, path)
    _validate(conn, is_jsonl, window)
    result = ImportResult()
    result.rows_read, result.rows_invalid, result.rows_duplicate = conn.execute(
        sa.text(
            "select count(*), count(*) filter (where problem is not null),"
            " count(*) filter (where duplicate) from usage_import_checked"
        )
    ).one()
    result.problems = [
        f"line {line}: {problem}"
        for line, problem in conn.execute(
            sa.text(
                "select line, problem from usage_import_checked where problem is not null"
                " order by line limit :n"
            ),
            {"n": max_problems},
        )
    ]
    if result.rows_invalid and not skip_invalid:
        raise UsageImportError(
            f"{path.name}: {result.rows_invalid} of {result.rows_read} rows invalid; nothing"
            " imported (fix them, or pass --skip-invalid to import the rest)",
            result.problems,
        )
    days = conn.scalars(
        sa.text(
            "select distinct cast(hour_start at time zone 'UTC' as date) as day"
            f" from usage_import_checked where {VALID} order by 1"
        )
    ).all()
    if not days:
        return result
    if result.rows_read - result.rows_invalid - result.rows_duplicate <= SWAP_THRESHOLD:
        ensure_partitions(conn, days[0], days[-1])
        result.adjustments = record_adjustments(
            conn,
            "select c.organization_id, c.metric, c.hour_start,"
            " coalesce(u.quantity, 0) as old_quantity, c.quantity as new_quantity"
            " from usage_import_checked c left join dictamesh_billing_usage_metrics u"
            " on u.organization_id = c.organization_id and u.metric = c.metric"
            f" and u.hour_start = c.hour_start where c.{VALID}",
            {},
            "import",
        )
        result.rows_written = _upsert(conn)
        return result
    existing = _lock_days(conn, set(days))
    target = f"{token}_t"
    _, result.rows_written = _build(
        conn,
        target,
        days,
        existing,
        "select organization_id, metric, hour_start, quantity, idempotency_key"
        f" from usage_import_checked where {VALID}",
        {"now": now},
    )
    result.adjustments = _adjust(conn, target, now)
    _swap(conn, target, days, existing)
    return result
