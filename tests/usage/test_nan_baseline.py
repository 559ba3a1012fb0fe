"""A NaN (or any unbillable) sample never moves usage out of every hour: the baseline of an
hour is the last *valid* sample before it, however far back it is.

Each organization below is one story told through a real, promtool-backfilled Prometheus;
the expected figures are worked out by hand next to the samples. In every story the hours
add up to the counter's whole increase since its first sample.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import pytest
from sqlalchemy.engine import Engine

from dagster_billing.assets.usage import usage_hourly
from dagster_billing.partitions import partition_range_tags
from dagster_billing.warehouse.database import Warehouse
from tests.conftest import PrometheusServer, openmetrics_counter, start_prometheus
from tests.usage.helpers import create_organizations, resources, usage_rows

API = "dictamesh_billing_usage_api_calls_total"
DAY = datetime(2026, 5, 1, tzinfo=UTC)


def at(hour: int, minute: int) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute)


def labels(org: str) -> dict[str, str]:
    return {"organization": org, "endpoint": "/graphql", "method": "POST"}


STORIES = {
    # The reported case: 5450 (01:50), NaN (01:58) is the last sample before 02:00,
    # 5470 (02:10), 5500 (02:40). 02:00 bills 5500 - 5450 = 50, not 30.
    # 00:00 is the series' first sample (counts from zero): 5400; 01:00: +50.
    "nan-last-before": (
        [
            (5400, at(0, 30)),
            (5450, at(1, 50)),
            ("NaN", at(1, 58)),
            (5470, at(2, 10)),
            (5500, at(2, 40)),
        ],
        {0: 5400, 1: 50, 2: 50},
    ),
    # NaN as the first sample of an hour (exactly on 02:00): 02:00 bills 5500 - 5450 = 50.
    "nan-first-of-hour": (
        [
            (5400, at(0, 30)),
            (5450, at(1, 50)),
            ("NaN", at(2, 0)),
            (5470, at(2, 10)),
            (5500, at(2, 40)),
        ],
        {0: 5400, 1: 50, 2: 50},
    ),
    # NaN as the last sample of the 02:00 hour: 02:00 bills 5470 - 5450 = 20, and 03:00
    # bills 5500 - 5470 = 30 (the baseline skips the NaN at 02:50).
    "nan-last-of-hour": (
        [
            (5400, at(0, 30)),
            (5450, at(1, 50)),
            (5470, at(2, 10)),
            ("NaN", at(2, 50)),
            (5500, at(3, 10)),
        ],
        {0: 5400, 1: 50, 2: 20, 3: 30},
    ),
    # The only sample in the hour before 02:00 is a NaN; the last valid one (5450 at
    # 00:10) is older than the 1 h lookback: 02:00 bills 5470 - 5450 = 20. Infinity and a
    # negative value are skipped the same way.
    "only-unbillable-within-lookback": (
        [
            (5450, at(0, 10)),
            ("NaN", at(1, 30)),
            ("+Inf", at(1, 40)),
            (-3, at(1, 45)),
            (5470, at(2, 10)),
        ],
        {0: 5450, 1: 0, 2: 20},
    ),
}


@pytest.fixture(scope="module")
def history() -> Iterator[PrometheusServer]:
    text = openmetrics_counter(
        API,
        [
            (labels(org), value, when)
            for org, (samples, _) in STORIES.items()
            for value, when in samples
        ],
    )
    with start_prometheus(openmetrics_text=text) as server:
        yield server


@pytest.fixture(scope="module")
def orgs(engine: Engine) -> dict[str, int]:
    return create_organizations(engine, *STORIES)


def test_usage_across_an_unbillable_sample_is_billed_in_the_hour_after_it(
    history: PrometheusServer, warehouse: Warehouse, engine: Engine, orgs: dict[str, int]
) -> None:
    result = dg.materialize(
        [usage_hourly],
        resources=resources(warehouse, history.url),
        tags=partition_range_tags("2026-05-01-00:00", "2026-05-01-03:00"),
    )
    assert result.success
    billed = {org: {} for org in STORIES}
    for hour in range(4):
        for (org, metric), quantity in usage_rows(engine, at(hour, 0)).items():
            if org in billed and metric == "api_calls":
                billed[org][hour] = quantity
    for org, (samples, expected) in STORIES.items():
        nonzero = {hour: Decimal(q) for hour, q in expected.items() if q}
        assert {h: q for h, q in billed[org].items() if q} == nonzero, org
        last_valid = [v for v, _ in samples if isinstance(v, int) and v >= 0][-1]
        assert sum(billed[org].values()) == last_valid, org
