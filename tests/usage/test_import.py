"""Bulk import: CSV and JSON Lines through COPY, bad rows by line and field, duplicates,
re-imports that change nothing, and a million rows in seconds."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.usage.hourly import HourReading
from dagster_billing.usage.importer import ImportResult, UsageImportError, import_usage
from dagster_billing.usage.store import write_hour
from dagster_billing.warehouse.database import Warehouse
from dagster_billing.warehouse.partitions import existing_partitions
from tests.test_cli import billing
from tests.usage.helpers import create_organizations, create_subscription, insert_usage, usage_rows

H = datetime(2026, 4, 2, 7, tzinfo=UTC)


@pytest.fixture(scope="module")
def orgs(engine: Engine) -> dict[str, int]:
    return create_organizations(engine, "imp-a", "imp-b")


def _import(engine: Engine, path: Path, skip_invalid: bool = False) -> ImportResult:
    with engine.begin() as conn:
        return import_usage(conn, path, skip_invalid=skip_invalid)


def test_csv_imports_and_a_second_import_changes_nothing(
    engine: Engine, orgs: dict[str, int], tmp_path: Path
) -> None:
    path = tmp_path / "usage.csv"
    path.write_text(
        "organization,metric,hour,quantity,idempotency_key\n"
        "imp-a,api_calls,2026-04-02T07:00:00Z,1200,k1\n"
        "imp-a,storage,2026-04-02T07:00:00+00:00,12.5,k2\n"
        "imp-b,transfer,2026-04-02 07:00:00,0.000001,\n"  # no offset: UTC
        "imp-a,api_calls,2026-04-02T07:00:00Z,1200,k1\n"  # an exact repeat: a duplicate
    )
    result = _import(engine, path)
    assert (result.rows_read, result.rows_written, result.rows_duplicate) == (4, 3, 1)
    assert usage_rows(engine, H) == {
        ("imp-a", "api_calls"): Decimal("1200"),
        ("imp-a", "storage"): Decimal("12.5"),
        ("imp-b", "transfer"): Decimal("0.000001"),
    }
    again = _import(engine, path)
    assert (again.rows_read, again.rows_written) == (4, 0)


def test_jsonl_with_timestamps_lands_in_their_hour(
    engine: Engine, orgs: dict[str, int], tmp_path: Path
) -> None:
    path = tmp_path / "usage.jsonl"
    rows = [
        {
            "organization": "imp-b",
            "metric": "query_processing",
            "timestamp": "2026-04-02T08:59:59.999+02:00",
            "quantity": "3.25",
        },
        {
            "organization": "imp-b",
            "metric": "api_calls",
            "timestamp": "2026-04-02T07:30:00Z",
            "quantity": 7,
            "idempotency_key": "j\\1",
        },
    ]
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    result = _import(engine, path)
    assert result.rows_written == 2
    rows_now = usage_rows(engine, H - timedelta(hours=1))
    assert rows_now == {("imp-b", "query_processing"): Decimal("3.25")}
    assert usage_rows(engine, H)[("imp-b", "api_calls")] == Decimal("7")


BAD_CSV = (
    "organization,metric,hour,quantity,idempotency_key\n"
    "imp-a,api_calls,2026-04-03T00:00:00Z,5,ok-1\n"  # line 2: fine
    "nobody,api_calls,2026-04-03T00:00:00Z,5,\n"  # 3: unknown organization
    "imp-a,bandwidth,2026-04-03T00:00:00Z,5,\n"  # 4: unknown metric
    "imp-a,api_calls,2026-04-03T00:30:00Z,5,\n"  # 5: not on the hour
    "imp-a,api_calls,yesterday-ish,5,\n"  # 6: not a timestamp
    "imp-a,transfer,2026-04-03T00:00:00Z,-5,\n"  # 7: negative
    "imp-a,transfer,2026-04-03T01:00:00Z,1.0000001,\n"  # 8: 7 decimals
    "imp-a,api_calls,2026-04-03T00:00:00Z,6,\n"  # 9: conflicts with line 2
    "imp-b,api_calls,2026-04-03T00:00:00Z,1,ok-1\n"  # 10: key reused for another row
    "imp-b,storage,2026-04-03T00:00:00Z,,\n"  # 11: quantity missing
)


def test_bad_rows_are_reported_by_line_and_field_and_nothing_loads(
    engine: Engine, orgs: dict[str, int], tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    with pytest.raises(UsageImportError) as error:
        _import(engine, path)
    assert "9 of 10 rows invalid; nothing imported" in str(error.value)
    assert error.value.problems == [
        "line 3: organization: unknown organization 'nobody'",
        "line 4: metric: unknown metric 'bandwidth'",
        "line 5: hour: must be the start of an hour, got '2026-04-03T00:30:00Z'",
        "line 6: hour: not a timestamp, got 'yesterday-ish'",
        "line 7: quantity: must be >= 0, got '-5'",
        "line 8: quantity: at most 6 decimals (the column is numeric(24, 6)), got '1.0000001'",
        "line 9: organization, metric, hour: conflicts with line 2",
        "line 10: idempotency_key: used by line 2 for a different row",
        "line 11: quantity: required",
    ]
    assert usage_rows(engine, datetime(2026, 4, 3, tzinfo=UTC)) == {}

    skipped = _import(engine, path, skip_invalid=True)
    assert (skipped.rows_invalid, skipped.rows_written) == (9, 1)
    assert usage_rows(engine, datetime(2026, 4, 3, tzinfo=UTC)) == {
        ("imp-a", "api_calls"): Decimal("5")
    }


def test_malformed_files_fail_with_the_line(
    engine: Engine, orgs: dict[str, int], tmp_path: Path
) -> None:
    csv_path = tmp_path / "short.csv"
    csv_path.write_text("organization,metric,hour,quantity\nimp-a,api_calls,2026-04-03T00:00:00Z\n")
    with pytest.raises(UsageImportError, match=r"short.csv: line 2: malformed row"):
        _import(engine, csv_path)
    header = tmp_path / "header.csv"
    header.write_text("org,metric,hour,quantity\n")
    with pytest.raises(UsageImportError, match=r"line 1: unknown column 'org'"):
        _import(engine, header)
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text('{"organization": "imp-a"\n[1, 2]\n')
    with pytest.raises(UsageImportError) as error:
        _import(engine, jsonl)
    assert error.value.problems == [
        "line 1: line: not a JSON object",
        "line 2: line: not a JSON object",
    ]


def test_cli_import_reports_and_exits_nonzero_on_bad_rows(
    warehouse: Warehouse, orgs: dict[str, int], tmp_path: Path
) -> None:
    path = tmp_path / "bad.csv"
    path.write_text(BAD_CSV)
    keep = {"USAGE_RETENTION_DAYS": "3650"}  # the file's April 2026 hours are in the window
    refused = billing("usage", "import", str(path), dsn=warehouse.libpq_url(), **keep)
    assert refused.returncode == 1
    assert "line 3: organization: unknown organization 'nobody'" in refused.stderr
    accepted = billing(
        "usage", "import", str(path), "--skip-invalid", dsn=warehouse.libpq_url(), **keep
    )
    assert accepted.returncode == 0, accepted.stderr
    assert "10 rows read" in accepted.stdout


def test_a_million_rows_import_exactly(engine: Engine, tmp_path: Path) -> None:
    organizations = [f"bulk-{n:04d}" for n in range(1000)]
    create_organizations(engine, *organizations)
    path = tmp_path / "million.csv"
    start = datetime(2026, 5, 1, tzinfo=UTC)
    hours = [(start + timedelta(hours=h)).strftime("%Y-%m-%dT%H:00:00Z") for h in range(1000)]
    with path.open("w") as handle:
        handle.write("organization,metric,hour,quantity\n")
        for hour in hours:
            for org in organizations:
                handle.write(f"{org},api_calls,{hour},17\n")
    result = _import(engine, path)
    assert (result.rows_read, result.rows_written) == (1_000_000, 1_000_000)
    with engine.connect() as conn:
        total = conn.scalar(
            sa.text(
                "select sum(quantity) from dictamesh_billing_usage_metrics"
                " where hour_start >= :s and hour_start < :e"
            ),
            {"s": start, "e": start + timedelta(hours=1000)},
        )
    assert total == Decimal(17_000_000)


def test_changes_to_invoiced_hours_become_adjustments(engine: Engine, tmp_path: Path) -> None:
    org = create_organizations(engine, "adj-org")["adj-org"]
    started = datetime(2026, 3, 1, tzinfo=UTC)
    subscription = create_subscription(engine, org, "starter", started, "sub-adj")
    with engine.begin() as conn:
        invoices = [
            conn.scalar(
                sa.text(
                    "insert into dictamesh_billing_invoices (number, organization_id,"
                    " subscription_id, period_start, period_end, currency, status, paid_at,"
                    " subtotal, total, amount_due) values (:n, :org, :sub, :start, :end, 'USD',"
                    " :status, :paid_at, 99, 99, 99) returning id"
                ),
                {
                    "n": f"INV-ADJ-{i}",
                    "org": org,
                    "sub": subscription,
                    "start": start,
                    "end": start + timedelta(days=31),
                    "status": status,
                    "paid_at": start if status == "paid" else None,
                },
            )
            for i, (start, status) in enumerate(
                [(started, "paid"), (datetime(2026, 4, 1, tzinfo=UTC), "open")]
            )
        ]
    billed_hour = datetime(2026, 3, 15, 10, tzinfo=UTC)  # billed in arrears by invoice 2
    open_hour = datetime(2026, 4, 2, 10, tzinfo=UTC)  # not invoiced yet
    insert_usage(engine, org, "api_calls", billed_hour, 40)

    path = tmp_path / "late.csv"
    path.write_text(
        "organization,metric,hour,quantity\n"
        f"adj-org,api_calls,{billed_hour.isoformat()},50\n"
        f"adj-org,transfer,{billed_hour.isoformat()},2.5\n"
        f"adj-org,api_calls,{open_hour.isoformat()},7\n"
    )
    assert _import(engine, path).adjustments == 2
    # Prometheus ingestion of the same invoiced hour: its own rows only (the import's win).
    with engine.begin() as conn:
        reading = HourReading(billed_hour, {("adj-org", "query_processing"): Decimal(3 * 10**9)})
        assert write_hour(conn, reading, None).adjustments == 1
        adjustments = conn.execute(
            sa.text(
                "select metric, old_quantity, new_quantity, invoice_id, source"
                " from dictamesh_billing_usage_adjustments where organization_id = :org"
                " order by source, metric"
            ),
            {"org": org},
        ).all()
    assert adjustments == [
        ("api_calls", Decimal(40), Decimal(50), invoices[1], "import"),
        ("transfer", Decimal(0), Decimal("2.5"), invoices[1], "import"),
        ("query_processing", Decimal(0), Decimal(3), invoices[1], "prometheus"),
    ]


def _day_version(engine: Engine, day: datetime) -> int:
    with engine.connect() as conn:
        return conn.scalar(
            sa.text("select version from dictamesh_billing_usage_day_versions where day = :d"),
            {"d": day.date()},
        )


def test_a_large_import_merges_with_the_days_existing_rows(engine: Engine, tmp_path: Path) -> None:
    """Above SWAP_THRESHOLD the day is rebuilt and swapped in: rows the file does not
    mention survive, rows it mentions are replaced, a re-import changes nothing."""
    organizations = [f"swap-{n:04d}" for n in range(1000)]
    ids = create_organizations(engine, *organizations)
    day = datetime(2026, 7, 1, tzinfo=UTC)  # clear of the million-row test's days
    insert_usage(engine, ids["swap-0000"], "api_calls", day, 5)
    insert_usage(engine, ids["swap-0000"], "storage", day, 9)
    insert_usage(engine, ids["swap-0001"], "api_calls", day + timedelta(days=1), 3)
    path = tmp_path / "day.csv"
    with path.open("w") as handle:
        handle.write("organization,metric,hour,quantity\n")
        for hour in range(24):
            stamp = (day + timedelta(hours=hour)).isoformat()
            handle.writelines(f"{org},api_calls,{stamp},17\n" for org in organizations)
    version = _day_version(engine, day)
    assert _import(engine, path).rows_written == 24_000
    # the swap bypasses the usage table's triggers, so it marks the day's rollup stale itself
    assert _day_version(engine, day) == version + 1
    rows = usage_rows(engine, day)
    assert rows[("swap-0000", "api_calls")] == Decimal(17)
    assert rows[("swap-0000", "storage")] == Decimal(9)
    assert len(rows) == 1001
    assert usage_rows(engine, day + timedelta(days=1)) == {("swap-0001", "api_calls"): Decimal(3)}
    assert _import(engine, path).rows_written == 0
    with engine.connect() as conn:
        indexes = conn.scalar(
            sa.text("select count(*) from pg_indexes where tablename = :t"),
            {"t": "dictamesh_billing_usage_metrics_p20260701"},
        )
    assert indexes == 2  # primary key and hour index rebuilt on the swapped-in partition


def test_a_large_file_with_bad_rows_gets_the_full_report(engine: Engine, tmp_path: Path) -> None:
    """Large CSV files take the parallel path; a row it cannot prove valid sends the whole
    file through the full check, which names the line, and leaves no scratch table."""
    organizations = [f"big-{n:04d}" for n in range(1000)]
    create_organizations(engine, *organizations)
    day = datetime(2026, 8, 1, tzinfo=UTC)
    lines = [
        f"{org},api_calls,{(day + timedelta(hours=hour)).isoformat()},4\n"
        for hour in range(24)
        for org in organizations
    ]
    lines[100] = lines[100].replace("big-0100", "nobody")
    lines[20_000] = lines[20_000].replace("api_calls", "bandwidth")
    lines[23_000] = lines[23_000].replace(",4\n", ",4.0000001\n")
    lines.append(lines[5])  # an exact repeat: a duplicate
    path = tmp_path / "big.csv"
    path.write_text("organization,metric,hour,quantity\n" + "".join(lines))
    with pytest.raises(UsageImportError) as error:
        _import(engine, path)
    assert error.value.problems == [
        "line 102: organization: unknown organization 'nobody'",
        "line 20002: metric: unknown metric 'bandwidth'",
        "line 23002: quantity: at most 6 decimals (the column is numeric(24, 6)), got '4.0000001'",
    ]
    result = _import(engine, path, skip_invalid=True)
    assert (result.rows_invalid, result.rows_duplicate, result.rows_written) == (3, 1, 23_997)
    with engine.connect() as conn:
        scratch = conn.scalar(
            sa.text("select count(*) from pg_class where relname like 'usage\\_import\\_%'")
        )
    assert scratch == 0


def test_quantity_limits_and_json_non_numbers_name_the_field(
    engine: Engine, orgs: dict[str, int], tmp_path: Path
) -> None:
    csv_path = tmp_path / "limits.csv"
    csv_path.write_text(
        "organization,metric,hour,quantity\n"
        "imp-a,api_calls,2026-04-04T00:00:00Z,1e30\n"  # line 2: beyond numeric(24, 6)
        "imp-a,transfer,2026-04-04T00:00:00Z,NaN\n"  # line 3
        "imp-a,storage,2026-04-04T00:00:00Z,lots\n"  # line 4
        "imp-b,api_calls,2026-04-04T00:00:00Z,999999999999999999.999999\n"  # 5: the largest
        "imp-b,transfer,infinity,1\n"  # 6: no partition holds it
    )
    with pytest.raises(UsageImportError) as error:
        _import(engine, csv_path)
    assert error.value.problems == [
        "line 2: quantity: must be less than 10^18 (the column is numeric(24, 6)), got '1e30'",
        "line 3: quantity: must be a finite number, got 'NaN'",
        "line 4: quantity: not a number, got 'lots'",
        "line 6: hour: not a finite time, got 'infinity'",
    ]
    jsonl = tmp_path / "nonfinite.jsonl"
    jsonl.write_text(
        '{"organization": "imp-a", "metric": "api_calls", "hour": "2026-04-04T01:00:00Z",'
        ' "quantity": NaN}\n'
        '{"organization": "imp-a", "metric": "api_calls", "hour": "2026-04-04T02:00:00Z",'
        ' "quantity": -Infinity}\n'
        '{"organization": "imp-a", "quantity": 1\n'
    )
    with pytest.raises(UsageImportError) as error:
        _import(engine, jsonl)
    assert error.value.problems == [
        "line 1: quantity: NaN is not a JSON number (JSON has no NaN or Infinity;"
        " give a finite number)",
        "line 2: quantity: -Infinity is not a JSON number (JSON has no NaN or Infinity;"
        " give a finite number)",
        "line 3: line: not a JSON object",
    ]


def test_rows_outside_retention_or_in_the_future_are_refused_by_line_and_field(
    warehouse: Warehouse, engine: Engine, orgs: dict[str, int], tmp_path: Path
) -> None:
    """The rows of 1970 and 2999 were once written (with partitions made for them) and the
    1970 one dropped silently by the next retention run: the import refuses them instead."""
    now = datetime.now(UTC)
    recent = (now - timedelta(hours=2)).replace(minute=0, second=0, microsecond=0)
    expired = (now - timedelta(days=31)).replace(minute=0, second=0, microsecond=0)
    path = tmp_path / "years.csv"
    path.write_text(
        "organization,metric,hour,timestamp,quantity\n"
        f"imp-a,api_calls,{recent.isoformat()},,11\n"  # line 2: fine
        "imp-a,api_calls,1970-01-01T00:00:00Z,,12\n"  # 3: before retention
        "imp-a,api_calls,2999-01-01T00:00:00Z,,13\n"  # 4: the future
        f"imp-a,storage,{expired.isoformat()},,14\n"  # 5: 31 days > USAGE_RETENTION_DAYS=30
        f"imp-a,transfer,,{(now + timedelta(hours=1)).isoformat()},15\n"  # 6: an hour ahead
    )
    env = {"USAGE_RETENTION_DAYS": "30", "USAGE_MAX_CLOCK_SKEW_MINUTES": "10"}
    with engine.connect() as conn:
        partitions_before = set(existing_partitions(conn))
    refused = billing("usage", "import", str(path), dsn=warehouse.libpq_url(), **env)
    assert refused.returncode == 1
    problems = [line.strip() for line in refused.stderr.splitlines() if line.startswith("  ")]
    assert [p.split(":")[0:2] for p in problems] == [
        ["line 3", " hour"],
        ["line 4", " hour"],
        ["line 5", " hour"],
        ["line 6", " timestamp"],
    ]
    assert (
        "outside the 30 days of usage kept (USAGE_RETENTION_DAYS), got '1970-01-01" in (problems[0])
    )
    assert "in the future by more than 10 min (USAGE_MAX_CLOCK_SKEW_MINUTES)" in problems[1]
    assert "4 of 5 rows invalid; nothing imported" in refused.stderr

    accepted = billing(
        "usage", "import", str(path), "--skip-invalid", dsn=warehouse.libpq_url(), **env
    )
    assert accepted.returncode == 0, accepted.stderr
    assert "5 rows read, 1 written, 0 duplicates, 4 invalid skipped" in accepted.stdout
    assert usage_rows(engine, recent)[("imp-a", "api_calls")] == Decimal(11)
    with engine.connect() as conn:
        created = set(existing_partitions(conn)) - partitions_before
    assert created <= {recent.date()}
