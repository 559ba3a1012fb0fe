"""Bulk usage import: CSV or JSON Lines through COPY, validated in SQL, merged in one go.

The file streams byte for byte into a temporary table (COPY is the fastest way into
Postgres and Python never parses a row); SQL checks every row at once and names the line
and field of each problem; valid rows are deduplicated and upserted into the partitioned
usage table. A file with bad rows loads nothing unless `skip_invalid`: half a file is
harder to repair than none.
"""

from __future__ import annotations

import csv
import hashlib
import io
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.usage.store import record_adjustments
from dagster_billing.warehouse.partitions import PARENT, ensure_partitions_for, partition_name

COLUMNS = ("organization", "metric", "hour", "timestamp", "quantity", "idempotency_key")
REQUIRED = ("organization", "metric", "quantity")
CHUNK = 1 << 20


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


def _stream(conn: Connection, path: Path, copy_sql: str) -> str:
    """COPY the file's bytes as they are; returns its sha256. COPY's own errors (a row
    with the wrong number of fields) name the line."""
    digest = hashlib.sha256()
    cursor = conn.connection.driver_connection.cursor()
    try:
        with cursor.copy(copy_sql) as copy, path.open("rb") as handle:
            while chunk := handle.read(CHUNK):
                digest.update(chunk)
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
    return digest.hexdigest()


def _load(conn: Connection, path: Path) -> str:
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
        return _stream(
            conn,
            path,
            f"copy usage_import_stage ({', '.join(names)}) from stdin (format csv, header true)",
        )
    conn.execute(
        sa.text(
            "create temp table usage_import_lines (line bigint generated always as identity,"
            " doc text) on commit drop"
        )
    )
    # JSON never contains raw control characters, so \x01 and \x02 can be delimiter and
    # quote: each line arrives verbatim, backslashes included.
    digest = _stream(
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
            " when not j.ok or jsonb_typeof(j.d) <> 'object' then 'json' end as json_problem"
            " from usage_import_lines l cross join lateral (select"
            " coalesce(dictamesh_billing_is_valid(l.doc, 'jsonb'), false) as ok) v"
            " cross join lateral (select v.ok, case when v.ok then cast(l.doc as jsonb) end as d) j"
        )
    )
    return digest


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
       case when q >= 0 and q < 1e18 and scale(q) <= 6 then cast(q as numeric(24, 6)) end
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
           when coalesce(quantity, '') = '' then 'quantity: required'
           when q is null or q < 0 or q >= 1e18 or scale(q) > 6
               then 'quantity: must be a decimal >= 0 with at most 6 decimals, got '
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


# Imports with more rows than this rebuild their days and swap them in (see _swap_days).
SWAP_THRESHOLD = 20_000

_DIFFERS = (
    "(u.quantity, u.source, u.idempotency_key) is distinct from"
    " (c.quantity, 'import', c.idempotency_key)"
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


def _swap_days(conn: Connection, days: list[datetime]) -> int:
    """Large imports: rebuild each touched day partition from its rows and the import's,
    then swap it in; returns the rows inserted or changed.

    A row-by-row insert into the partitioned table pays two foreign-key checks and two
    index insertions per row (~30k rows/s). Here the rows are routed in one statement into
    fresh tables without either, and ATTACH PARTITION checks the foreign keys with one
    join and builds the indexes by sorting. The days are locked first (in order, so two
    imports cannot deadlock), so no concurrent write is lost.
    """
    names = [partition_name(day.date()) for day in days]
    for name in names:
        conn.execute(sa.text(f"lock table {name} in access exclusive mode"))
    # Permanent (its partitions become permanent partitions), named per session.
    target = f"usage_import_target_{conn.scalar(sa.text('select pg_backend_pid()'))}"
    conn.execute(
        sa.text(
            f"create table {target} (like {PARENT} including defaults including"
            " constraints) partition by range (hour_start)"
        )
    )
    bounds = []
    for day, name in zip(days, names, strict=True):
        start, end = day.isoformat(), (day + timedelta(days=1)).isoformat()
        bounds.append((name, start, end))
        conn.execute(
            sa.text(
                f"create table {name}_import (like {PARENT} including defaults including"
                f" constraints); alter table {name}_import add constraint {name}_range"
                f" check (hour_start >= '{start}' and hour_start < '{end}');"
                f" alter table {target} attach partition {name}_import"
                f" for values from ('{start}') to ('{end}')"
            )
        )
    first, last = days[0], days[-1] + timedelta(days=1)
    conn.execute(
        sa.text(
            f"insert into {target} select c.organization_id, c.metric, c.hour_start,"
            " c.quantity, 'import', c.idempotency_key,"
            f" case when u.source is not null and not {_DIFFERS} then u.ingested_at"
            " else now() end"
            f" from usage_import_checked c left join {PARENT} u"
            " on u.organization_id = c.organization_id and u.metric = c.metric"
            " and u.hour_start = c.hour_start and u.hour_start >= :first and u.hour_start < :last"
            f" where c.{VALID}"
        ),
        {"first": first, "last": last},
    )
    changed = conn.scalar(sa.text(f"select count(*) from {target} where ingested_at = now()"))
    for name, start, end in bounds:
        conn.execute(
            sa.text(
                f"insert into {name}_import select u.* from {name} u where not exists"
                " (select 1 from usage_import_checked c where c.hour_start = u.hour_start"
                f" and c.organization_id = u.organization_id and c.metric = u.metric"
                f" and c.{VALID});"
                f" alter table {target} detach partition {name}_import;"
                f" alter table {PARENT} detach partition {name}; drop table {name};"
                f" alter table {name}_import rename to {name};"
                f" alter table {PARENT} attach partition {name}"
                f" for values from ('{start}') to ('{end}');"
                f" alter table {name} drop constraint {name}_range"
            )
        )
    conn.execute(sa.text(f"drop table {target}"))
    # the swap bypasses the usage table's triggers: mark the days' rollups out of date
    conn.execute(
        sa.text("select dictamesh_billing_usage_days_written(cast(:days as date[]))"),
        {"days": [day.date() for day in days]},
    )
    return changed


def _validate(conn: Connection, is_jsonl: bool) -> None:
    """Fill `usage_import_checked`: every row with its problem (null when valid)."""
    conn.execute(sa.text(_HOURS))
    conn.execute(
        sa.text(
            _CHECK.replace("{json}", "s.json_problem," if is_jsonl else "").replace(
                "{json_case}",
                "when json_problem = 'blank' then 'line: blank'"
                " when json_problem = 'json' then 'line: not a JSON object'"
                if is_jsonl
                else "",
            )
        )
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


def import_usage(
    conn: Connection, path: Path, skip_invalid: bool = False, max_problems: int = 100
) -> ImportResult:
    """Import `path` in the caller's transaction; raises UsageImportError (nothing
    written) when rows are bad and `skip_invalid` is false."""
    conn.execute(sa.text("set local timezone = 'UTC'"))  # a timestamp without offset is UTC
    digest = _load(conn, path)
    _validate(conn, _format(path) == "jsonl")
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
    days = conn.execute(
        sa.text(
            "select distinct date_trunc('day', hour_start, 'UTC') as day"
            " from usage_import_hours where hour_start is not null order by 1"
        )
    ).all()
    if days:
        ensure_partitions_for(conn, days[0][0], days[-1][0] + timedelta(days=1))
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
        valid = result.rows_read - result.rows_invalid - result.rows_duplicate
        result.rows_written = (
            _swap_days(conn, [day for (day,) in days]) if valid > SWAP_THRESHOLD else _upsert(conn)
        )
    conn.execute(
        sa.text(
            "insert into dictamesh_billing_usage_imports (file_name, file_sha256, rows_read,"
            " rows_invalid, rows_duplicate, rows_written) values (:name, :sha, :read,"
            " :invalid, :duplicate, :written)"
        ),
        {
            "name": path.name,
            "sha": digest,
            "read": result.rows_read,
            "invalid": result.rows_invalid,
            "duplicate": result.rows_duplicate,
            "written": result.rows_written,
        },
    )
    return result
