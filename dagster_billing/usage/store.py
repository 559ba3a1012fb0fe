"""Writing usage to the warehouse: one hour replaced atomically, adjustments to invoiced
hours recorded, daily rollups rebuilt. Shared by Prometheus ingestion and bulk import."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.usage.hourly import HOUR, HourReading, Reject, to_catalog_units
from dagster_billing.warehouse.partitions import ensure_partitions_for, existing_partitions

# The usage window each finalized invoice billed in arrears: from the previous finalized
# invoice's billing date (or the subscription's start) up to its own billing date.
INVOICED_WINDOWS = """
    select i.id as invoice_id, i.organization_id,
           coalesce(
               lag(i.period_start) over (partition by i.subscription_id order by i.period_start),
               s.started_at
           ) as usage_start,
           i.period_start as usage_end
    from dictamesh_billing_invoices i
    join dictamesh_billing_subscriptions s on s.id = i.subscription_id
    where i.status in ('open', 'paid', 'uncollectible')
"""


@dataclass(frozen=True)
class HourWrite:
    rows_written: int
    rows_changed: int
    rejects: list[Reject]
    adjustments: int


def copy_rows(
    conn: Connection, table: str, columns: Sequence[str], rows: Iterable[Sequence[Any]]
) -> None:
    """COPY rows into `table` on the connection's own transaction (psycopg 3)."""
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"copy {table} ({', '.join(columns)}) from stdin") as copy:
        for row in rows:
            copy.write_row(row)


def lock_hour(conn: Connection, hour_start: datetime) -> None:
    """Transaction-level lock: two runs of one hour serialize and the second sees the first."""
    conn.execute(
        sa.text(
            "select pg_advisory_xact_lock(hashtext('dictamesh_billing_usage_hour'), hashtext(:h))"
        ),
        {"h": hour_start.isoformat()},
    )


def organization_ids(conn: Connection, external_ids: Iterable[str]) -> dict[str, int]:
    wanted = sorted(set(external_ids))
    if not wanted:
        return {}
    rows = conn.execute(
        sa.text(
            "select external_id, id from dictamesh_billing_organizations"
            " where external_id = any(:ids)"
        ),
        {"ids": wanted},
    )
    return {external: internal for external, internal in rows}


def record_adjustments(
    conn: Connection, changes_sql: str, params: dict[str, Any], source: str
) -> int:
    """Record changes to hours a finalized invoice already billed, for the next invoice.

    `changes_sql` yields (organization_id, metric, hour_start, old_quantity, new_quantity).
    """
    result = conn.execute(
        sa.text(
            f"with changes as ({changes_sql}), windows as ({INVOICED_WINDOWS})"
            " insert into dictamesh_billing_usage_adjustments (organization_id, metric,"
            " hour_start, invoice_id, old_quantity, new_quantity, source)"
            " select c.organization_id, c.metric, c.hour_start, w.invoice_id, c.old_quantity,"
            " c.new_quantity, :source from changes c join windows w"
            " on w.organization_id = c.organization_id"
            " and c.hour_start >= w.usage_start and c.hour_start < w.usage_end"
            " where c.old_quantity <> c.new_quantity"
        ),
        {**params, "source": source},
    )
    return result.rowcount


def write_hour(conn: Connection, reading: HourReading, run_id: str | None) -> HourWrite:
    """Replace the hour's Prometheus rows with `reading`, in the caller's transaction.

    Rows from bulk import or the API for the same key win over Prometheus: an operator's
    correction must not be undone by the next scheduled re-ingestion.
    """
    hour = reading.hour_start
    lock_hour(conn, hour)
    if hour.date() not in existing_partitions(conn):  # the creation lock is global: avoid it
        ensure_partitions_for(conn, hour, hour + HOUR)
    known = organization_ids(conn, (org for org, _ in reading.quantities))
    rejects = list(reading.rejects)
    rows = []
    for (org, metric), raw in sorted(reading.quantities.items()):
        if org not in known:
            rejects.append(
                Reject(metric, org, {"organization": org}, "unknown_organization", None, str(raw))
            )
            continue
        rows.append((known[org], metric, to_catalog_units(metric, raw)))

    conn.execute(
        sa.text(
            "create temp table usage_hour_new (organization_id bigint, metric text,"
            " quantity numeric(24, 6)) on commit drop"
        )
    )
    copy_rows(conn, "usage_hour_new", ("organization_id", "metric", "quantity"), rows)
    params = {"hour": hour}
    adjustments = record_adjustments(
        conn,
        "select coalesce(n.organization_id, o.organization_id) as organization_id,"
        " coalesce(n.metric, o.metric) as metric, cast(:hour as timestamptz) as hour_start,"
        " coalesce(o.quantity, 0) as old_quantity, coalesce(n.quantity, 0) as new_quantity"
        " from usage_hour_new n full join (select * from dictamesh_billing_usage_metrics"
        "  where hour_start = :hour) o using (organization_id, metric)"
        " where coalesce(o.source, 'prometheus') = 'prometheus'",
        params,
        "prometheus",
    )
    deleted = conn.execute(
        sa.text(
            "delete from dictamesh_billing_usage_metrics u where u.hour_start = :hour"
            " and u.source = 'prometheus' and not exists (select 1 from usage_hour_new n"
            " where n.organization_id = u.organization_id and n.metric = u.metric)"
        ),
        params,
    ).rowcount
    upserted = conn.execute(
        sa.text(
            "insert into dictamesh_billing_usage_metrics as u (organization_id, metric,"
            " hour_start, quantity, source) select organization_id, metric, :hour, quantity,"
            " 'prometheus' from usage_hour_new"
            " on conflict (organization_id, metric, hour_start) do update"
            " set quantity = excluded.quantity, ingested_at = now()"
            " where u.source = 'prometheus' and u.quantity <> excluded.quantity"
        ),
        params,
    ).rowcount
    conn.execute(sa.text("drop table usage_hour_new"))  # a backfill writes many hours
    conn.execute(
        sa.text(
            "delete from dictamesh_billing_usage_rejects where hour_start = :hour"
            " and source = 'prometheus'"
        ),
        params,
    )
    if rejects:
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_usage_rejects (hour_start, source, organization,"
                " metric, series, sample_at, value, reason, run_id) values (:hour, 'prometheus',"
                " :organization, :metric, cast(:series as jsonb), :sample_at, :value, :reason,"
                " :run_id)"
            ),
            [
                {
                    "hour": hour,
                    "organization": r.organization,
                    "metric": r.metric,
                    "series": json.dumps(dict(r.series), sort_keys=True),
                    "sample_at": r.sample_at,
                    "value": r.value,
                    "reason": r.reason,
                    "run_id": run_id,
                }
                for r in rejects
            ],
        )
    conn.execute(
        sa.text(
            "insert into dictamesh_billing_usage_ingestions (hour_start, run_id, series,"
            " samples, rows_written, rows_changed, rejects) values (:hour, :run_id, :series,"
            " :samples, :written, :changed, :rejects)"
        ),
        {
            **params,
            "run_id": run_id,
            "series": reading.series,
            "samples": reading.samples,
            "written": len(rows),
            "changed": deleted + upserted,
            "rejects": len(rejects),
        },
    )
    return HourWrite(len(rows), deleted + upserted, rejects, adjustments)


def rollup_day(conn: Connection, day: date) -> int:
    """Rebuild one day of `dictamesh_billing_usage_daily` from the hourly rows and record
    the day's version it summed (migration 0005): rating reads the rollup only while no
    hourly write came after it."""
    start = datetime.combine(day, time(), UTC)
    params = {"day": day, "start": start, "end": start + timedelta(days=1)}
    # Locking the day's version row waits for writers of the day still in flight, and
    # makes later writers wait for this rollup: the version read is the one summed.
    conn.execute(
        sa.text(
            "insert into dictamesh_billing_usage_day_versions (day) values (:day)"
            " on conflict (day) do nothing"
        ),
        params,
    )
    version = conn.scalar(
        sa.text(
            "select version from dictamesh_billing_usage_day_versions where day = :day for update"
        ),
        params,
    )
    conn.execute(sa.text("delete from dictamesh_billing_usage_daily where day = :day"), params)
    conn.execute(
        sa.text(
            "update dictamesh_billing_usage_day_versions set rolled_up_version = :version"
            " where day = :day"
        ),
        {**params, "version": version},
    )
    return conn.execute(
        sa.text(
            "insert into dictamesh_billing_usage_daily (organization_id, metric, day, quantity,"
            " hours) select organization_id, metric, :day, sum(quantity), count(*)"
            " from dictamesh_billing_usage_metrics"
            " where hour_start >= :start and hour_start < :end"
            " group by organization_id, metric"
        ),
        params,
    ).rowcount
