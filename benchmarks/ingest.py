"""Usage ingestion throughput, against baselines measured in the same run.

1. Bulk import: `--rows` hourly rows (1,000 organizations x 4 metrics x as many hours as
   needed) through the product path (`import_usage`: for a CSV this large, two
   connections COPY the halves and build the day partitions, the caller's transaction
   swaps them in) vs a bare COPY of the same file into an unindexed, unpartitioned
   unlogged table. Target: >= 250k rows/s and >= 0.5 of bare COPY. For reference, also
   a COPY into a logged table with the usage primary key (no validation, no partitions).
   The server is the product's embedded one, with its settings (EMBEDDED_SETTINGS).
2. One hour from Prometheus for `--orgs` organizations x 4 metrics (backfilled with
   promtool, 30 s scrape interval): time of `read_hour` + `write_hour`.
3. B5, a backfill of `usage_hourly`: `--backfill-hours` hourly partitions (720: 30 days)
   for `--backfill-orgs` organizations (100) x 4 metrics from a promtool-backfilled
   Prometheus (`--scrape-seconds`, 60). The backfill runs as the runs a Dagster asset
   backfill launches for `usage_hourly` (its BackfillPolicy cuts the range into runs of
   at most 24 partitions; each run is `materialize` with the range tags), in process and
   one after another: the daemon's scheduling and run-launch overhead are not measured.
   Baseline in the same run: the same hours through `read_hour` + `write_hour` directly.
   Prints wall time, partitions/s and the ratio. Target: 720 partitions <= 3 minutes.

Run: .venv/bin/python benchmarks/ingest.py [--rows 10000000] [--orgs 1000] [--skip-prometheus]
     [--skip-import] [--skip-backfill] [--backfill-hours 720] [--backfill-orgs 100]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from dagster_billing.catalog import load_catalog  # noqa: E402
from dagster_billing.catalog.sync import sync_catalog  # noqa: E402
from dagster_billing.metering import SERIES_BY_METRIC  # noqa: E402
from dagster_billing.resources import PrometheusResource  # noqa: E402
from dagster_billing.usage.hourly import read_hour  # noqa: E402
from dagster_billing.usage.importer import import_usage  # noqa: E402
from dagster_billing.usage.store import write_hour  # noqa: E402
from dagster_billing.warehouse import migrate  # noqa: E402
from dagster_billing.warehouse.database import (  # noqa: E402
    Warehouse,
    _psycopg_url,
    embedded_server,
    make_engine,
)

METRICS = ("api_calls", "storage", "transfer", "query_processing")
START = datetime(2026, 2, 1, tzinfo=UTC)


def write_file(path: Path, rows: int, orgs: int) -> None:
    per_hour = orgs * len(METRICS)
    with path.open("w") as handle:
        handle.write("organization,metric,hour,quantity\n")
        written, hour = 0, 0
        while written < rows:
            stamp = (START + timedelta(hours=hour)).strftime("%Y-%m-%dT%H:00:00Z")
            lines = [
                f"org-{o:05d},{m},{stamp},{(o * 7 + hour) % 10000}.5\n"
                for o in range(orgs)
                for m in METRICS
            ][: rows - written]
            handle.writelines(lines)
            written += min(per_hour, len(lines))
            hour += 1


def bench_import(engine: sa.Engine, rows: int, orgs: int, tmp: Path) -> None:
    path = tmp / "usage.csv"
    began = time.monotonic()
    write_file(path, rows, orgs)
    size = path.stat().st_size / 1e6
    print(f"file: {rows:,} rows, {size:.0f} MB, written in {time.monotonic() - began:.1f} s")

    bare = _copy_seconds(engine, path, "create unlogged table bench_bare ({columns})")
    key = "primary key (organization, metric, hour)"
    keyed = _copy_seconds(engine, path, f"create table bench_bare ({{columns}}, {key})")

    began = time.monotonic()
    with engine.begin() as conn:
        result = import_usage(conn, path)
    product = time.monotonic() - began
    assert result.rows_written == rows, result
    bare_rate, product_rate = rows / bare, rows / product
    print(f"bare COPY (unindexed, unpartitioned): {bare:7.1f} s  {bare_rate:12,.0f} rows/s")
    print(f"billing usage import (product path):  {product:7.1f} s  {product_rate:12,.0f} rows/s")
    print(
        f"ratio product / bare: {product_rate / bare_rate:.2f}  (target >= 0.50; >= 250,000 rows/s)"
    )
    print(
        f"reference: COPY into a logged table with the primary key: {keyed:.1f} s,"
        f" {rows / keyed:,.0f} rows/s (product / that: {product_rate * keyed / rows:.2f})"
    )


def _copy_seconds(engine: sa.Engine, path: Path, ddl: str) -> float:
    """Seconds to COPY the file into a table made by `ddl`, one text column per field."""
    with engine.begin() as conn:
        columns = "organization text, metric text, hour text, quantity text"
        conn.execute(sa.text(ddl.format(columns=columns)))
        cursor = conn.connection.driver_connection.cursor()
        began = time.monotonic()
        with (
            cursor.copy("copy bench_bare from stdin (format csv, header true)") as copy,
            path.open("rb") as f,
        ):
            while chunk := f.read(1 << 20):
                copy.write(chunk)
        seconds = time.monotonic() - began
        conn.execute(sa.text("drop table bench_bare"))
    return seconds


def bench_prometheus(engine: sa.Engine, orgs: int, tmp: Path) -> None:
    from tests.conftest import start_prometheus

    hour = datetime(2026, 2, 10, 12, tzinfo=UTC)
    lines = []
    names = {metric: name for metric, name in SERIES_BY_METRIC.items() if metric != "storage"}
    stamps = [hour - timedelta(minutes=5) + timedelta(seconds=30 * i) for i in range(132)]
    for name in names.values():
        lines.append(f"# TYPE {name.removesuffix('_total')} counter")
        for o in range(orgs):
            for i, at in enumerate(stamps):
                lines.append(
                    f'{name}{{organization="org-{o:05d}"}} {i * (o + 1)} {at.timestamp()!r}'
                )
    lines.append("# TYPE dictamesh_billing_usage_storage_bytes gauge")
    for o in range(orgs):
        for at in stamps:
            lines.append(
                f'dictamesh_billing_usage_storage_bytes{{organization="org-{o:05d}",kind="metadata"}}'
                f" {o * 1_000_000} {at.timestamp()!r}"
            )
    samples = len(lines) - 4
    with start_prometheus(tmp, openmetrics_text="\n".join(lines) + "\n") as server:
        resource = PrometheusResource(url=server.url, timeout_seconds=120)
        began = time.monotonic()
        reading = read_hour(resource, hour)
        read = time.monotonic() - began
        with engine.begin() as conn:
            written = write_hour(conn, reading, None)
        total = time.monotonic() - began
    print(
        f"prometheus hour: {orgs} orgs x 4 metrics, {reading.samples:,} samples in the hour"
        f" ({samples:,} backfilled): read {read:.2f} s, read+write {total:.2f} s,"
        f" {written.rows_written} rows"
    )


def _backfill_history(orgs: int, hours: int, start: datetime, scrape_seconds: int) -> str:
    """Counters rising by a per-organization step each scrape, storage flat, from one scrape
    before `start` (the first hour's baseline) to the end of the last hour."""
    per_hour = 3600 // scrape_seconds
    stamps = [
        (start + timedelta(seconds=scrape_seconds * i)).timestamp()
        for i in range(-1, hours * per_hour)
    ]
    lines = []
    for metric, name in SERIES_BY_METRIC.items():
        kind = "gauge" if metric == "storage" else "counter"
        lines.append(f"# TYPE {name.removesuffix('_total')} {kind}")
        for o in range(orgs):
            labels = f'organization="org-{o:05d}"' + (',kind="metadata"' if kind == "gauge" else "")
            step = o + 1
            lines.extend(
                f"{name}{{{labels}}} {step * 1_000_000 if kind == 'gauge' else i * step} {at!r}"
                for i, at in enumerate(stamps)
            )
    return "\n".join(lines) + "\n"


def _totals(conn: sa.Connection, start: datetime, hours: int) -> list[Any]:
    return conn.execute(
        sa.text(
            "select metric, sum(quantity) from dictamesh_billing_usage_metrics"
            " where hour_start >= :s and hour_start < :e group by 1 order by 1"
        ),
        {"s": start, "e": start + timedelta(hours=hours)},
    ).all()


def bench_backfill(
    engine: sa.Engine, dsn: str, orgs: int, hours: int, scrape_seconds: int, tmp: Path
) -> None:
    import dagster as dg

    from dagster_billing.assets.usage import usage_hourly
    from dagster_billing.partitions import hourly_partitions, partition_range_tags
    from dagster_billing.resources import WarehouseResource
    from tests.conftest import start_prometheus

    start = datetime(2026, 3, 1, tzinfo=UTC)
    history = _backfill_history(orgs, hours, start, scrape_seconds)
    last = start + timedelta(hours=hours - 1)
    keys = hourly_partitions.get_partition_keys_in_range(
        dg.PartitionKeyRange(f"{start:%Y-%m-%d-%H:%M}", f"{last:%Y-%m-%d-%H:%M}")
    )
    policy = usage_hourly.backfill_policy
    per_run = (policy.max_partitions_per_run if policy else None) or len(keys)
    runs = [keys[i : i + per_run] for i in range(0, len(keys), per_run)]
    print(
        f"backfill: {len(keys)} hourly partitions, {orgs} orgs x 4 metrics,"
        f" {history.count(chr(10)):,} samples backfilled by promtool, {len(runs)} runs"
        f" of <= {per_run} partitions"
    )
    began = time.monotonic()
    # 30 days x 400 series is ~17M samples: promtool takes minutes (setup, not measured)
    with start_prometheus(tmp, openmetrics_text=history, backfill_timeout=3600) as server:
        print(f"promtool backfill and Prometheus start: {time.monotonic() - began:.0f} s")
        prometheus = PrometheusResource(url=server.url, timeout_seconds=120)
        began = time.monotonic()
        for k in range(hours):
            reading = read_hour(prometheus, start + timedelta(hours=k))
            with engine.begin() as conn:
                write_hour(conn, reading, None)
        direct = time.monotonic() - began
        with engine.connect() as conn:
            expected = _totals(conn, start, hours)

        resources = {
            "warehouse": WarehouseResource(dsn=dsn, data_dir=str(tmp)),
            "prometheus": prometheus,
        }
        instance = dg.DagsterInstance.ephemeral()
        began = time.monotonic()
        for chunk in runs:
            result = dg.materialize(
                [usage_hourly],
                instance=instance,
                resources=resources,
                tags=partition_range_tags(chunk[0], chunk[-1]),
                raise_on_error=True,
            )
            assert result.success
        backfill = time.monotonic() - began
        with engine.connect() as conn:
            after = _totals(conn, start, hours)
    assert after == expected, (after, expected)
    print(
        f"direct read_hour + write_hour (baseline): {direct:7.1f} s"
        f"  {hours / direct:6.2f} partitions/s"
    )
    print(
        f"usage_hourly backfill (Dagster runs):     {backfill:7.1f} s"
        f"  {hours / backfill:6.2f} partitions/s"
    )
    print(
        f"ratio backfill / direct: {direct / backfill:.2f} of the baseline's rate"
        f"  (target: 720 partitions <= 180 s, i.e. >= 4 partitions/s)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--skip-prometheus", action="store_true")
    parser.add_argument("--skip-import", action="store_true")
    parser.add_argument("--skip-backfill", action="store_true")
    parser.add_argument("--backfill-hours", type=int, default=720)
    parser.add_argument("--backfill-orgs", type=int, default=100)
    parser.add_argument("--scrape-seconds", type=int, default=60)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="billing-bench-") as tmp_name:
        tmp = Path(tmp_name)
        server = embedded_server(tmp / "pgdata", cleanup_mode="delete")
        engine = make_engine(Warehouse(_psycopg_url(server.get_uri("postgres")), True))
        migrate.upgrade(engine)
        with engine.begin() as conn:
            sync_catalog(conn, load_catalog())
            conn.execute(
                sa.text(
                    "insert into dictamesh_billing_organizations (external_id, name, currency)"
                    " select 'org-' || lpad(n::text, 5, '0'), 'Org ' || n, 'USD'"
                    " from generate_series(0, :n - 1) n"
                ),
                {"n": max(args.orgs, args.backfill_orgs)},
            )
        if not args.skip_import:
            bench_import(engine, args.rows, args.orgs, tmp)
        if not args.skip_prometheus:
            bench_prometheus(engine, args.orgs, tmp)
        if not args.skip_backfill:
            dsn = server.get_uri("postgres")
            bench_backfill(
                engine, dsn, args.backfill_orgs, args.backfill_hours, args.scrape_seconds, tmp
            )
        engine.dispose()
        server.cleanup()


if __name__ == "__main__":
    main()
