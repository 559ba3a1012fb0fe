"""Rating throughput: one month of hourly usage through the production dbt run, against
a bare `sum(quantity) group by organization, metric` over the same rows in the same run.

Starts a private embedded Postgres; for each scale (`--orgs` x 1, 3, 10 by default) it
loads `orgs` starter subscriptions anchored 2026-10-01 with all four metrics every hour
of October (744 h x 4 rows per organization), rolls October up with the `usage_daily`
asset (untimed: production runs it at 02:30, an hour before invoicing; `--no-rollup`
skips it, so every hour is read), vacuums and checkpoints (what that hour would do in
the background), then times
  - `rate`: the Dagster asset `billing_invoice_models` for partition 2026-11-01 (the dbt
    build production runs: every intermediate model, the invoice marts and their tests),
  - `bare`: the group-by over the same October rows.
Each is timed `--repeat` times (default 2); the best of each counts, every run is
printed. Prints both times, the ratio rate/bare (target <= 2.0) and usage rows/s per
scale.
`--history-days N` adds N older days to the rollup, as a longer retention would hold
them (the bare group-by still reads October only).
Usage: .venv/bin/python benchmarks/rating.py [--orgs 1000] [--scales 1,3,10] [--no-rollup]
       [--repeat 2] [--history-days 0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from dagster_billing.assets.rating import billing_dbt_models, billing_invoice_models
from dagster_billing.assets.usage import usage_daily
from dagster_billing.catalog import load_catalog
from dagster_billing.catalog.sync import sync_catalog
from dagster_billing.definitions import build_resources
from dagster_billing.partitions import partition_range_tags
from dagster_billing.resources import WarehouseResource
from dagster_billing.settings import load_settings
from dagster_billing.warehouse import migrate
from dagster_billing.warehouse.database import (
    Warehouse,
    _psycopg_url,
    embedded_server,
    ensure_database,
)
from dagster_billing.warehouse.partitions import ensure_partitions_for

MONTH_START = datetime(2026, 10, 1, tzinfo=UTC)
MONTH_END = datetime(2026, 11, 1, tzinfo=UTC)
BARE = (
    "select organization_id, metric, sum(quantity) from dictamesh_billing_usage_metrics"
    " where hour_start >= :start and hour_start < :end group by organization_id, metric"
)


def load(engine: sa.Engine, orgs: int) -> int:
    """Organizations, subscriptions and a month of usage; returns usage rows."""
    with engine.begin() as conn:
        migrate.upgrade(engine)
        sync_catalog(conn, load_catalog())
        ensure_partitions_for(conn, MONTH_START, MONTH_END)
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_organizations (external_id, name, currency)"
                " select 'org-' || g, 'Org ' || g, 'USD' from generate_series(1, :n) g"
            ),
            {"n": orgs},
        )
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_subscriptions (external_id, organization_id,"
                " plan_id, billing_cycle, seats, billing_anchor, started_at)"
                " select 'sub-' || id, id, 'starter', 'monthly', 5, :start, :start"
                " from dictamesh_billing_organizations"
            ),
            {"start": MONTH_START},
        )
    # one statement per day keeps each transaction (and its WAL) small
    day = MONTH_START
    while day < MONTH_END:
        with engine.begin() as conn:
            conn.execute(
                sa.text(
                    "insert into dictamesh_billing_usage_metrics"
                    " (organization_id, metric, hour_start, quantity, source)"
                    " select o.id, m.id, h,"
                    "  case m.id when 'api_calls' then 1500 + (o.id % 700)"
                    "   when 'storage' then 40 + (o.id % 30) when 'transfer' then 0.25"
                    "   else 1.5 end, 'api'"
                    " from dictamesh_billing_organizations o"
                    " cross join dictamesh_billing_metrics m"
                    " cross join generate_series(:day, :day + interval '23 hours',"
                    "   interval '1 hour') h"
                ),
                {"day": day},
            )
        day = day.replace(day=day.day + 1) if day.day < 31 else MONTH_END
    settle(engine)
    with engine.connect() as conn:
        return conn.scalar(sa.text("select count(*) from dictamesh_billing_usage_metrics"))


def add_history(engine: sa.Engine, days: int) -> int:
    """`days` of older usage before October, as retention keeps it: already rolled up
    (daily rows and current day versions, no hours, which the run never reads for them).
    Returns the daily rows added."""
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_usage_day_versions (day, version,"
                " rolled_up_version) select d::date, 1, 1 from generate_series("
                " :start - :days * interval '1 day', :start - interval '1 day',"
                " interval '1 day') d"
            ),
            {"start": MONTH_START, "days": days},
        )
        return conn.execute(
            sa.text(
                "insert into dictamesh_billing_usage_daily (organization_id, metric, day,"
                " quantity, hours) select o.id, m.id, v.day, 24, 24"
                " from dictamesh_billing_organizations o"
                " cross join dictamesh_billing_metrics m"
                " cross join dictamesh_billing_usage_day_versions v where v.day < :start"
            ),
            {"start": MONTH_START.date()},
        ).rowcount


def settle(engine: sa.Engine) -> None:
    """Vacuum, analyze and checkpoint what the untimed setup wrote, as the time between
    the writes and the billing run would in production (the rollup runs an hour before
    invoicing); otherwise autovacuum and the checkpointer work through the timed part."""
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(sa.text("vacuum (analyze)"))
        conn.execute(sa.text("checkpoint"))


def rate(
    warehouse: Warehouse, engine: sa.Engine, rollup: bool, repeat: int, history_days: int
) -> tuple[list[float], int]:
    """The production asset for the Nov 1 billing day, `repeat` times (each run after the
    first re-rates the day, replacing its rows); returns (seconds per run, invoices)."""
    resources = {
        **build_resources(load_settings()),
        "warehouse": WarehouseResource(dsn=warehouse.libpq_url(), data_dir="unused"),
    }
    dg.materialize([billing_dbt_models], resources=resources)  # staging views, untimed
    if rollup:
        tags = partition_range_tags("2026-10-01", "2026-10-31")
        assert dg.materialize([usage_daily], resources=resources, tags=tags).success
        if history_days:
            add_history(engine, history_days)
    settle(engine)
    seconds = []
    for _ in range(repeat):
        start = time.perf_counter()
        result = dg.materialize(
            [billing_invoice_models], resources=resources, partition_key="2026-11-01"
        )
        seconds.append(time.perf_counter() - start)
        assert result.success
    with engine.connect() as conn:
        invoices = conn.scalar(sa.text("select count(*) from analytics.fct_invoices"))
    return seconds, invoices


def bare(engine: sa.Engine) -> float:
    start = time.perf_counter()
    with engine.connect() as conn:
        rows = conn.execute(sa.text(BARE), {"start": MONTH_START, "end": MONTH_END}).all()
    assert rows
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--scales", default="1,3,10")
    parser.add_argument("--no-rollup", action="store_true", help="rate from the hours only")
    parser.add_argument("--repeat", type=int, default=2, help="timed runs of each; best counts")
    parser.add_argument(
        "--history-days",
        type=int,
        default=0,
        help="older days already rolled up before October (retention); the rate must not grow",
    )
    args = parser.parse_args()

    os.environ.setdefault("DAGSTER_HOME", tempfile.mkdtemp(prefix="bench-rating-home-"))
    with tempfile.TemporaryDirectory(prefix="bench-rating-") as tmp:
        server = embedded_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        base = _psycopg_url(server.get_uri("postgres"))
        print(
            f"{'orgs':>7} {'usage rows':>11} {'rate s':>8} {'bare s':>8} {'ratio':>6} "
            f"{'rate rows/s':>12} {'bare rows/s':>12} {'invoices':>9}  runs (rate | bare)"
        )
        for scale in (int(s) for s in args.scales.split(",")):
            orgs = args.orgs * scale
            name = f"bench_{orgs}"
            ensure_database(base.set(database=name), name)
            warehouse = Warehouse(base.set(database=name), False)
            engine = sa.create_engine(warehouse.url)
            rows = load(engine, orgs)
            bare(engine)  # warm the cache like the dbt run will find it
            bare_runs = [bare(engine) for _ in range(args.repeat)]
            rate_runs, invoices = rate(
                warehouse, engine, not args.no_rollup, args.repeat, args.history_days
            )
            rate_seconds, bare_seconds = min(rate_runs), min(bare_runs)
            assert invoices == orgs, f"billed {invoices} invoices for {orgs} organizations"
            engine.dispose()
            print(
                f"{orgs:>7} {rows:>11,} {rate_seconds:>8.1f} {bare_seconds:>8.1f}"
                f" {rate_seconds / bare_seconds:>6.2f} {rows / rate_seconds:>12,.0f}"
                f" {rows / bare_seconds:>12,.0f} {invoices:>9,}"
                f"  {_runs(rate_runs)} | {_runs(bare_runs)}",
                flush=True,
            )
        server.cleanup()


def _runs(seconds: list[float]) -> str:
    return " ".join(f"{s:.1f}" for s in seconds)


if __name__ == "__main__":
    main()
