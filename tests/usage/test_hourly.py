"""usage_hourly bills exact counter increments from a real Prometheus with backfilled history.

Every expected figure below is computed by hand in the comments next to the samples.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.assets.usage import UsageHourlyConfig, usage_daily, usage_hourly
from dagster_billing.partitions import partition_range_tags
from dagster_billing.resources import PrometheusResource
from dagster_billing.usage.hourly import read_hour
from dagster_billing.usage.realtime import current_period_usage
from dagster_billing.usage.store import write_hour
from dagster_billing.warehouse.database import Warehouse
from tests.conftest import PrometheusServer, openmetrics_counter, start_prometheus
from tests.usage.helpers import create_organizations, openmetrics_gauge, resources, usage_rows

H = datetime(2026, 3, 10, 10, tzinfo=UTC)
KEY = "2026-03-10-10:00"


def at(minutes: float) -> datetime:
    """Minutes after 10:00 (negative: before the hour)."""
    return H + timedelta(minutes=minutes)


API = "dictamesh_billing_usage_api_calls_total"
TRANSFER = "dictamesh_billing_usage_transfer_bytes_total"
QUERY = "dictamesh_billing_usage_query_processing_bytes_total"
STORAGE = "dictamesh_billing_usage_storage_bytes"

acme_graphql = {"organization": "acme", "endpoint": "/graphql", "method": "POST", "instance": "a"}
acme_items = {"organization": "acme", "endpoint": "/v1/items/:id", "method": "GET", "instance": "a"}
globex_api = {"organization": "globex", "endpoint": "/graphql", "method": "POST", "instance": "a"}
globex_nan = {"organization": "globex", "endpoint": "/health", "method": "GET", "instance": "a"}
initech_api = {"organization": "initech", "endpoint": "/graphql", "method": "POST", "instance": "a"}

HISTORY = (
    openmetrics_counter(
        API,
        [
            # acme /graphql: baseline 100 at 09:59:30; 110 exactly at 10:00 (+10, this hour),
            # 130 (+20), restart to 5 (+5), 25 (+20); 40 exactly at 11:00 is the next hour's.
            (acme_graphql, 100, at(-0.5)),
            (acme_graphql, 110, at(0)),
            (acme_graphql, 130, at(20)),
            (acme_graphql, 5, at(30)),
            (acme_graphql, 25, at(45)),
            (acme_graphql, 40, at(60)),
            # acme /v1/items/:id: a new series, first seen at 10:10 with 7 (+7), then 9 (+2).
            (acme_items, 7, at(10)),
            (acme_items, 9, at(50)),
            # globex: 1000 at 09:50, then no scrape until 10:40 (a gap): 1500 (+500).
            (globex_api, 1000, at(-10)),
            (globex_api, 1500, at(40)),
            # a NaN sample is rejected; the good ones around it still count (3 -> 4: +1).
            (globex_nan, 3, at(-5)),
            (globex_nan, "NaN", at(20)),
            (globex_nan, 4, at(30)),
            # initech is no organization of ours: rejected, never billed.
            (initech_api, 3, at(10)),
        ],
    )
    + openmetrics_counter(
        TRANSFER,
        [
            # acme out: 1e9 at 09:55; +2,500,000,001; restart to 499,999,999 (+499,999,999)
            # = 3,000,000,000 bytes = 3 GB exactly.
            ({"organization": "acme", "direction": "out"}, 1_000_000_000, at(-5)),
            ({"organization": "acme", "direction": "out"}, 3_500_000_001, at(15)),
            ({"organization": "acme", "direction": "out"}, 499_999_999, at(30)),
            # globex in: new series, 1,500 bytes = 0.0000015 GB -> 0.000002 (6 dp, half up).
            ({"organization": "globex", "direction": "in"}, 1_500, at(5)),
        ],
    )
    + openmetrics_counter(
        QUERY,
        [
            # acme: the last sample before the hour is at 07:30 (older than the 1 h lookback;
            # found by the fallback): 2e9 -> 12e9 = 10 GB, not 12.
            ({"organization": "acme"}, 2_000_000_000, at(-150)),
            ({"organization": "acme"}, 12_000_000_000, at(30)),
        ],
    )
    + openmetrics_gauge(
        STORAGE,
        [
            # acme metadata from two scrape targets pooled: (50 + 52 + 54 + 52) / 4 = 52 GB;
            # the 11:00 sample belongs to the next hour. documents: 1 GB. Total 53 GB.
            ({"organization": "acme", "kind": "metadata", "instance": "a"}, 50e9, at(0)),
            ({"organization": "acme", "kind": "metadata", "instance": "a"}, 52e9, at(30)),
            ({"organization": "acme", "kind": "metadata", "instance": "a"}, 54e9, at(59.99)),
            ({"organization": "acme", "kind": "metadata", "instance": "a"}, 100e9, at(60)),
            ({"organization": "acme", "kind": "metadata", "instance": "b"}, 52e9, at(45)),
            ({"organization": "acme", "kind": "documents", "instance": "a"}, 1e9, at(15)),
            # globex: a negative gauge sample is rejected; 2 GB remains.
            ({"organization": "globex", "kind": "metadata", "instance": "a"}, -5, at(10)),
            ({"organization": "globex", "kind": "metadata", "instance": "a"}, 2e9, at(20)),
        ],
    )
)

EXPECTED = {
    ("acme", "api_calls"): Decimal("64"),
    ("globex", "api_calls"): Decimal("501"),
    ("acme", "transfer"): Decimal("3"),
    ("globex", "transfer"): Decimal("0.000002"),
    ("acme", "query_processing"): Decimal("10"),
    ("acme", "storage"): Decimal("53"),
    ("globex", "storage"): Decimal("2"),
}


@pytest.fixture(scope="module")
def history() -> Iterator[PrometheusServer]:
    with start_prometheus(openmetrics_text=HISTORY) as server:
        yield server


@pytest.fixture(scope="module")
def orgs(engine: Engine) -> dict[str, int]:
    return create_organizations(engine, "acme", "globex")


def _materialize(
    warehouse: Warehouse, url: str | None, key: str = KEY
) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [usage_hourly], partition_key=key, resources=resources(warehouse, url), raise_on_error=False
    )


def test_hour_is_billed_exactly(
    history: PrometheusServer, warehouse: Warehouse, engine: Engine, orgs: dict[str, int]
) -> None:
    result = _materialize(warehouse, history.url)
    assert result.success
    assert usage_rows(engine, H) == EXPECTED
    with engine.connect() as conn:
        rejects = sorted(
            conn.execute(
                sa.text(
                    "select organization, metric, reason, value"
                    " from dictamesh_billing_usage_rejects where hour_start = :h"
                ),
                {"h": H},
            ).all()
        )
    assert rejects == [
        ("globex", "api_calls", "nan", "NaN"),
        ("globex", "storage", "negative", "-5"),
        ("initech", "api_calls", "unknown_organization", "3"),
    ]


def test_next_hour_gets_the_boundary_sample(
    history: PrometheusServer, warehouse: Warehouse, engine: Engine, orgs: dict[str, int]
) -> None:
    assert _materialize(warehouse, history.url, "2026-03-10-11:00").success
    rows = usage_rows(engine, H + timedelta(hours=1))
    # acme /graphql 25 -> 40 at 11:00: +15; storage 100 GB at 11:00.
    assert rows[("acme", "api_calls")] == Decimal("15")
    assert rows[("acme", "storage")] == Decimal("100")


def test_rematerializing_replaces_exactly_the_hour(
    history: PrometheusServer, warehouse: Warehouse, engine: Engine, orgs: dict[str, int]
) -> None:
    other = H - timedelta(hours=5)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_usage_metrics (organization_id, metric, hour_start,"
                " quantity, source) values (:org, 'api_calls', :h, 999, 'prometheus'),"
                " (:org, 'query_processing', :here, 7, 'prometheus')"
            ),
            {"org": orgs["globex"], "h": other, "here": H},
        )
        conn.execute(
            sa.text(
                "update dictamesh_billing_usage_metrics set quantity = 42"
                " where hour_start = :here and metric = 'transfer'"
            ),
            {"here": H},
        )
    assert _materialize(warehouse, history.url).success
    # The changed rows are restored and the stray one is gone; the other hour is untouched.
    assert usage_rows(engine, H) == EXPECTED
    assert usage_rows(engine, other) == {("globex", "api_calls"): Decimal("999")}


def test_concurrent_runs_of_one_hour_leave_the_same_rows(
    history: PrometheusServer, engine: Engine, orgs: dict[str, int]
) -> None:
    prometheus = PrometheusResource(url=history.url)
    errors: list[BaseException] = []

    def ingest() -> None:
        try:
            reading = read_hour(prometheus, H)
            with engine.begin() as conn:
                write_hour(conn, reading, None)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=ingest) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert usage_rows(engine, H) == EXPECTED


def test_prometheus_down_fails_clearly_and_writes_nothing(
    warehouse: Warehouse, engine: Engine, orgs: dict[str, int]
) -> None:
    hour = H + timedelta(hours=3)
    context = dg.build_asset_context(partition_key="2026-03-10-13:00")
    with pytest.raises(dg.Failure) as failure:
        usage_hourly(
            context=context,
            config=UsageHourlyConfig(),
            **resources(warehouse, "http://127.0.0.1:9"),
        )
    assert failure.value.description.startswith(
        "usage_hourly 2026-03-10-13:00: Prometheus at http://127.0.0.1:9 unreachable"
    )
    assert usage_rows(engine, hour) == {}
    assert usage_hourly.op.retry_policy is not None


def test_a_backfill_run_ingests_its_range_of_hours(
    history: PrometheusServer, warehouse: Warehouse, engine: Engine, orgs: dict[str, int]
) -> None:
    result = dg.materialize(
        [usage_hourly],
        resources=resources(warehouse, history.url),
        tags=partition_range_tags("2026-03-10-10:00", "2026-03-10-11:00"),
    )
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["hours"].value == 2
    assert usage_rows(engine, H) == EXPECTED
    assert usage_rows(engine, H + timedelta(hours=1))[("acme", "api_calls")] == Decimal(15)


def test_daily_rollup_sums_the_days_hours(
    history: PrometheusServer, warehouse: Warehouse, engine: Engine, orgs: dict[str, int]
) -> None:
    assert _materialize(warehouse, history.url).success
    assert _materialize(warehouse, history.url, "2026-03-10-11:00").success
    result = dg.materialize(
        [usage_daily], partition_key="2026-03-10", resources=resources(warehouse, history.url)
    )
    assert result.success
    with engine.connect() as conn:
        daily = {
            (org, metric): (quantity, hours)
            for org, metric, quantity, hours in conn.execute(
                sa.text(
                    "select o.external_id, d.metric, d.quantity, d.hours"
                    " from dictamesh_billing_usage_daily d"
                    " join dictamesh_billing_organizations o on o.id = d.organization_id"
                    " where d.day = '2026-03-10'"
                )
            )
        }
    # 64 calls at 10:00 + 15 at 11:00 (the 999 stray row is 05:00 the same day).
    assert daily[("acme", "api_calls")] == (Decimal("79"), 2)
    assert daily[("acme", "storage")] == (Decimal("153"), 2)
    assert daily[("globex", "api_calls")][0] == Decimal("501") + Decimal("999")


def test_current_period_usage_adds_the_hours_not_yet_ingested(
    history: PrometheusServer, engine: Engine, orgs: dict[str, int]
) -> None:
    eleven = H + timedelta(hours=1)
    with engine.begin() as conn:
        for table in ("dictamesh_billing_usage_metrics", "dictamesh_billing_usage_ingestions"):
            conn.execute(sa.text(f"delete from {table} where hour_start = :h"), {"h": eleven})
    now = eleven + timedelta(minutes=30)
    prometheus = PrometheusResource(url=history.url)
    with engine.connect() as conn:
        live = current_period_usage(conn, "acme", H, now, prometheus)
        stored = current_period_usage(conn, "acme", H, now, realtime=False)
        with pytest.raises(ValueError, match="organization: unknown organization 'nobody'"):
            current_period_usage(conn, "nobody", H, now)
    assert live.live_hours == [eleven]
    # 10:00 from the warehouse (64 calls, 53 GB-hours); 11:00 live: +15 calls, 100 GB-hours.
    assert live.quantities["api_calls"] == Decimal(79)
    assert live.quantities["storage"] == Decimal(153)
    assert stored.quantities["api_calls"] == Decimal(64)
    assert stored.live_hours == []
