"""Business and pipeline metrics read from the warehouse on scrape."""

from __future__ import annotations

import os
import signal
import subprocess
from collections.abc import Iterator

import httpx
import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families
from sqlalchemy.engine import Engine

from dagster_billing.api import create_app
from dagster_billing.observability.collector import WarehouseCollector
from dagster_billing.observability.metrics import build_registry
from dagster_billing.settings import load_settings
from dagster_billing.warehouse import schema
from dagster_billing.warehouse.database import Warehouse
from tests.conftest import free_port
from tests.observability.data import MART_SCHEMA
from tests.test_cli import BILLING

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def scrape(engine: Engine, mart_schema: str = MART_SCHEMA, **kwargs: float) -> Samples:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WarehouseCollector(engine, mart_schema, **kwargs))
    return samples(generate_latest(registry).decode())


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(f"dictamesh_billing_{name}", tuple(sorted(labels.items())))]


def test_business_figures_come_from_the_warehouse(ops_engine: Engine) -> None:
    found = scrape(ops_engine)
    # The demo's five subscriptions; vandelay moved to professional on Oct 16.
    for plan, count in (("free", 1), ("starter", 1), ("professional", 2), ("enterprise", 1)):
        assert value(found, "active_subscriptions", plan=plan) == count
    assert value(found, "mrr") == 150.0  # 100.50 + 49.50, the newest month only
    assert value(found, "arr") == 1800.0
    for status, count in (("paid", 1), ("open", 3), ("uncollectible", 1)):
        assert value(found, "invoices_generated_total", status=status) == count
    for status, count in (("failed", 4), ("succeeded", 1), ("processing", 1)):
        assert value(found, "payments_processed_total", status=status, provider="stripe") == count
    for code, count in (("card_declined", 2), ("insufficient_funds", 1), ("unknown", 1)):
        assert value(found, "payment_failures_total", failure_code=code) == count
    for outcome, count in (("succeeded", 1), ("failed", 1), ("processing", 1)):
        assert value(found, "dunning_attempts_total", outcome=outcome) == count


def test_invoice_aging_and_collection(ops_engine: Engine) -> None:
    found = scrape(ops_engine)
    for bucket, count in (("not_due", 1), ("1_30", 0), ("31_60", 1), ("61_90", 0), ("over_90", 1)):
        assert value(found, "invoices_open", aging=bucket) == count
    assert value(found, "invoices_open_amount", currency="GBP", aging="31_60") == 2400.0
    assert value(found, "invoices_open_amount", currency="BRL", aging="over_90") == 150.0
    # Due in the last 90 days: OPS-1 paid; OPS-3 open and OPS-5 uncollectible are not.
    assert value(found, "invoices_due_90d", outcome="paid") == 1
    assert value(found, "invoices_due_90d", outcome="unpaid") == 2


def test_pipeline_lag_and_health(ops_engine: Engine) -> None:
    found = scrape(ops_engine)
    # the demo customers (five subscription.created, two .updated), two invoices, one failure
    assert value(found, "outbox_unpublished") == 10
    assert value(found, "dagster_run_failures_total", job="invoicing_daily") == 1
    assert 600 <= value(found, "outbox_oldest_unpublished_age_seconds") < 3600
    assert value(found, "webhook_events", status="received") == 1
    assert 300 <= value(found, "webhook_inbox_lag_seconds") < 3000
    # The newest stored hour started three hours ago, so it closed two hours ago.
    assert 7200 <= value(found, "usage_ingest_lag_seconds") < 3 * 3600
    assert value(found, "usage_last_hour_quantity", metric="api_calls") == 1500.0
    assert value(found, "usage_last_hour_quantity", metric="storage") == 420.5
    assert (
        value(found, "usage_ingest_rejects_24h", metric="api_calls", reason="unknown_organization")
        == 1
    )
    assert (
        "dictamesh_billing_usage_ingest_rejects_24h",
        (("metric", "api_calls"), ("reason", "nan")),
    ) not in found
    assert value(found, "credit_balance", currency="EUR") == 17.5
    assert value(found, "credit_grants_negative") == 1
    for source in ("subscriptions", "revenue", "invoices", "payments", "outbox", "usage"):
        assert value(found, "metrics_source_up", source=source) == 1


def test_missing_marts_drop_only_revenue(ops_engine: Engine) -> None:
    """Before dbt's first run there is no fct_mrr: the rest of the scrape still works."""
    found = scrape(ops_engine, mart_schema="no_such_schema")
    assert value(found, "metrics_source_up", source="revenue") == 0
    assert ("dictamesh_billing_mrr", ()) not in found
    assert value(found, "metrics_source_up", source="invoices") == 1
    assert value(found, "invoices_generated_total", status="paid") == 1


def test_a_scrape_within_the_cache_window_reads_nothing(ops_engine: Engine) -> None:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WarehouseCollector(ops_engine, MART_SCHEMA, cache_seconds=3600))
    before = samples(generate_latest(registry).decode())
    with ops_engine.begin() as conn:
        conn.execute(
            sa.update(schema.stripe_webhook_events)
            .where(schema.stripe_webhook_events.c.stripe_event_id == "evt_2")
            .values(status="processed")
        )
    assert samples(generate_latest(registry).decode()) == before
    assert value(scrape(ops_engine), "webhook_events", status="received") == 0
    with ops_engine.begin() as conn:
        conn.execute(
            sa.update(schema.stripe_webhook_events)
            .where(schema.stripe_webhook_events.c.stripe_event_id == "evt_2")
            .values(status="received")
        )


def test_api_serves_metrics_with_its_own_process_metrics(ops_engine: Engine) -> None:
    client = TestClient(create_app(load_settings(), ops_engine))
    response = client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    found = samples(response.text)
    assert value(found, "invoices_generated_total", status="open") == 3
    assert any(name == "process_cpu_seconds_total" for name, _ in found)
    assert any(name == "python_gc_collections_total" for name, _ in found)


def test_registry_is_not_the_global_one(ops_engine: Engine) -> None:
    """Counters other modules register globally (metering, ingest) stay out of /metrics."""
    text = generate_latest(build_registry(ops_engine)).decode()
    assert "dictamesh_billing_usage_api_calls_total" not in text


@pytest.fixture
def metrics_server(warehouse: Warehouse, ops_engine: Engine) -> Iterator[str]:
    port = free_port()
    env = {**os.environ, "BILLING_DATABASE_DSN": warehouse.libpq_url()}
    process = subprocess.Popen(
        [BILLING, "metrics", "serve", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"metrics on http://127.0.0.1:{port}/metrics"
        yield f"http://127.0.0.1:{port}/metrics"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def test_billing_metrics_serve(metrics_server: str) -> None:
    response = httpx.get(metrics_server, timeout=30, trust_env=False)
    found = samples(response.text)
    assert value(found, "payment_failures_total", failure_code="card_declined") == 2


def test_notification_failures_by_channel(ops_engine: Engine) -> None:
    """Deliveries that spent every retry count by channel; sent and pending ones do not."""
    with ops_engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_notification_deliveries"
                " (event_id, template, channel, recipient, status, attempts, last_error)"
                " select event_id, 'billing_invoice_generated', channel, 'ops@x.example',"
                " status, 3, 'Connection refused'"
                " from (select event_id, row_number() over (order by id) as n"
                "       from dictamesh_billing_outbox) e"
                " join (values (1, 'email', 'failed'), (2, 'email', 'failed'),"
                "              (3, 'service', 'failed'), (4, 'email', 'sent'),"
                "              (5, 'email', 'pending')) v(n, channel, status) using (n)"
            )
        )
    found = scrape(ops_engine, cache_seconds=0)
    assert value(found, "notification_failures_total", channel="email") == 2
    assert value(found, "notification_failures_total", channel="service") == 1
