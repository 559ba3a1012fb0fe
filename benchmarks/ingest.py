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

Run: .venv/bin/python benchmarks/ingest.py [--rows 10000000] [--orgs 1000] [--skip-prometheus]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

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


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=10_000_000)
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--skip-prometheus", action="store_true")
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
                {"n": args.orgs},
            )
        bench_import(engine, args.rows, args.orgs, tmp)
        if not args.skip_prometheus:
            bench_prometheus(engine, args.orgs, tmp)
        engine.dispose()
        server.cleanup()


if __name__ == "__main__":
    main()
