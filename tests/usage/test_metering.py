"""The metering library: guarded labels, a no-op switch, multiprocess exposure, and a live
round trip through a real Prometheus scraping it every second into the warehouse."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest, start_http_server
from sqlalchemy.engine import Engine

from dagster_billing.metering import Meter, normalize_endpoint
from dagster_billing.resources import PrometheusResource
from dagster_billing.usage.hourly import read_hour
from dagster_billing.usage.store import write_hour
from tests.conftest import free_port, start_prometheus
from tests.usage.helpers import create_organizations, usage_rows


def _value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


@pytest.mark.parametrize(
    ("raw", "route"),
    [
        ("/graphql", "/graphql"),
        ("/v1/items/12345?expand=true", "/v1/items/:id"),
        ("/v1/items/3f2b8c1e-9a4d-4c1b-8e7f-0a1b2c3d4e5f/files", "/v1/items/:id/files"),
        ("/v1/blobs/0123456789abcdef0123", "/v1/blobs/:id"),
        ("/v1/docs/01ARZ3NDEKTSV4RRFFQ69G5FAV", "/v1/docs/:id"),
        ("//v1//search/", "/v1/search"),
        ("/" + "route" * 40, ":other"),
    ],
)
def test_endpoints_are_normalized_to_routes(raw: str, route: str) -> None:
    assert normalize_endpoint(raw) == route


def test_unknown_organizations_and_disabled_metering_record_nothing() -> None:
    registry = CollectorRegistry()
    meter = Meter(registry, organizations={"acme"})
    assert meter.record_api_call("acme", "/v1/items/7", "post")
    assert not meter.record_api_call("mallory", "/graphql", "POST")
    assert (
        _value(
            registry,
            "dictamesh_billing_usage_api_calls_total",
            organization="acme",
            endpoint="/v1/items/:id",
            method="POST",
        )
        == 1
    )
    assert (
        _value(
            registry,
            "dictamesh_billing_usage_recordings_rejected_total",
            reason="unknown_organization",
        )
        == 1
    )
    assert "mallory" not in generate_latest(registry).decode()

    off = Meter(CollectorRegistry(), organizations={"acme"}, enabled=False)
    assert not off.record_api_call("acme", "/graphql", "POST")
    assert not off.record_transfer("acme", "out", 10)


def test_endpoint_cardinality_is_capped() -> None:
    registry = CollectorRegistry()
    meter = Meter(registry, organizations={"acme"}, max_endpoints=2)
    for path in ("/a", "/b", "/c", "/d"):
        meter.record_api_call("acme", path, "GET")
    assert (
        _value(
            registry,
            "dictamesh_billing_usage_api_calls_total",
            organization="acme",
            endpoint=":other",
            method="GET",
        )
        == 2
    )
    assert (
        _value(
            registry, "dictamesh_billing_usage_recordings_rejected_total", reason="endpoint_limit"
        )
        == 2
    )


def test_amounts_must_be_whole_non_negative_bytes() -> None:
    meter = Meter(CollectorRegistry(), organizations={"acme"})
    with pytest.raises(ValueError, match="size_bytes: must be a whole number of bytes >= 0"):
        meter.record_transfer("acme", "out", -1)
    with pytest.raises(ValueError, match="scanned_bytes"):
        meter.record_query_processing("acme", float("nan"))
    with pytest.raises(ValueError, match="direction"):
        meter.record_transfer("acme", "sideways", 1)


_WORKER = """
import sys
from dagster_billing.metering import Meter
meter = Meter(organizations={"acme"})
for _ in range(int(sys.argv[1])):
    meter.record_api_call("acme", "/graphql", "POST")
meter.record_storage("acme", "metadata", 5_000_000_000)
"""


def test_multiprocess_workers_are_summed(tmp_path: Path) -> None:
    env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": str(tmp_path)}
    for calls in ("3", "4"):
        subprocess.run([sys.executable, "-c", _WORKER, calls], env=env, check=True, timeout=60)
    exposed = subprocess.run(
        [
            sys.executable,
            "-c",
            "from prometheus_client import generate_latest;"
            "from dagster_billing.metering import metrics_registry;"
            "print(generate_latest(metrics_registry()).decode())",
        ],
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout
    assert (
        'dictamesh_billing_usage_api_calls_total{endpoint="/graphql",method="POST",'
        'organization="acme"} 7.0' in exposed
    )
    assert (
        'dictamesh_billing_usage_storage_bytes{kind="metadata",organization="acme"} 5e+09'
        in exposed
    )


def test_live_scrape_then_ingest_bills_what_was_recorded(engine: Engine) -> None:
    """Record, restart the service (a counter reset), record again; Prometheus scrapes
    every second; ingesting the hours bills exactly what was recorded."""
    create_organizations(engine, "live-acme")
    port = free_port()
    first = CollectorRegistry()
    meter = Meter(first, organizations={"live-acme"})
    server, thread = start_http_server(port, addr="127.0.0.1", registry=first)
    started = datetime.now(UTC)
    with start_prometheus(scrape_targets=[f"127.0.0.1:{port}"], scrape_interval="1s") as prom:
        for _ in range(25):
            meter.record_api_call("live-acme", "/graphql", "POST")
        meter.record_transfer("live-acme", "out", 1_500_000_000)
        meter.record_query_processing("live-acme", 7_000_000)
        meter.record_storage("live-acme", "metadata", 3_000_000_000)
        prom.wait_for('dictamesh_billing_usage_api_calls_total{organization="live-acme"} == 25')
        prom.wait_for("dictamesh_billing_usage_query_processing_bytes_total == 7000000")
        server.shutdown()
        server.server_close()
        thread.join()

        # The service restarts: a fresh registry, counters from zero, same target.
        second = CollectorRegistry()
        meter = Meter(second, organizations={"live-acme"})
        server, thread = start_http_server(port, addr="127.0.0.1", registry=second)
        for _ in range(4):
            meter.record_api_call("live-acme", "/graphql", "POST")
        meter.record_transfer("live-acme", "out", 500_000_001)
        meter.record_storage("live-acme", "metadata", 3_000_000_000)
        prom.wait_for('dictamesh_billing_usage_api_calls_total{organization="live-acme"} == 4')
        prom.wait_for("dictamesh_billing_usage_transfer_bytes_total == 500000001")
        time.sleep(1.5)  # one more scrape of the final values
        server.shutdown()
        server.server_close()
        thread.join()

        hour = started.replace(minute=0, second=0, microsecond=0)
        last = datetime.now(UTC)
        totals: dict[str, Decimal] = {}
        storage_hours = 0
        resource = PrometheusResource(url=prom.url)
        while hour <= last:
            with engine.begin() as conn:
                write_hour(conn, read_hour(resource, hour), None)
            for (org, metric), quantity in usage_rows(engine, hour).items():
                if org == "live-acme":
                    totals[metric] = totals.get(metric, Decimal(0)) + quantity
                    storage_hours += metric == "storage"
            hour += timedelta(hours=1)

    assert totals["api_calls"] == Decimal(29)
    assert totals["transfer"] == Decimal("2.000000")  # 1.5e9 + 0.500000001e9 bytes, 6 dp
    assert totals["query_processing"] == Decimal("0.007")
    assert totals["storage"] == Decimal(3) * storage_hours
