"""OpenTelemetry: off without OTEL_* variables; with the SDK's in-memory exporter, the
span tree of one API request and of one partitioned asset run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from fastapi.testclient import TestClient
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind
from sqlalchemy.engine import Engine

from dagster_billing.api import create_app
from dagster_billing.assets.usage import usage_daily
from dagster_billing.events.relay import Relay
from dagster_billing.observability import tracing
from dagster_billing.observability.runs import TracedWarehouseResource
from dagster_billing.resources.kafka import KafkaResource
from dagster_billing.resources.stripe import StripeApi
from dagster_billing.settings import load_settings
from dagster_billing.warehouse.database import Warehouse
from tests.conftest import STRIPE_TEST_API_KEY
from tests.events.conftest import consume, create_topic


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    assert tracing.configure_tracing("billing-tests", exporter=exporter) is not None
    yield exporter
    tracing.shutdown_tracing()


def children(of: ReadableSpan, found: tuple[ReadableSpan, ...]) -> list[ReadableSpan]:
    return [s for s in found if s.parent is not None and s.parent.span_id == of.context.span_id]


@pytest.mark.parametrize(
    ("environ", "wanted"),
    [
        ({}, False),
        ({"OTEL_EXPORTER_OTLP_ENDPOINT": "http://collector:4318"}, True),
        ({"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "http://collector:4318/v1/traces"}, True),
        ({"OTEL_TRACES_EXPORTER": "otlp"}, True),
        ({"OTEL_TRACES_EXPORTER": "none", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
        ({"OTEL_SDK_DISABLED": "true", "OTEL_EXPORTER_OTLP_ENDPOINT": "http://c:4318"}, False),
    ],
)
def test_tracing_is_off_unless_otel_variables_ask(environ: dict[str, str], wanted: bool) -> None:
    assert tracing.tracing_requested(environ) is wanted


def test_without_configuration_nothing_is_installed() -> None:
    assert tracing.configure_tracing("billing-tests", environ={}) is None
    assert not tracing.tracing_enabled()
    assert tracing.kafka_trace_headers() == []


def test_traced_resource_is_the_plain_one_while_tracing_is_off(
    warehouse: Warehouse, ops_engine: Engine, tmp_path: Path
) -> None:
    assert not tracing.tracing_enabled()
    resource = TracedWarehouseResource(dsn=warehouse.libpq_url(), data_dir=str(tmp_path))
    result = dg.materialize(
        [usage_daily], resources={"warehouse": resource}, partition_key="2026-10-06"
    )
    assert result.success


def test_api_request_span_tree(
    spans: InMemorySpanExporter, ops_engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """GET /metrics (traced here: scrapes are excluded by default) is one server span
    whose children include the warehouse queries the collector ran."""
    monkeypatch.setenv("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "healthz")
    client = TestClient(create_app(load_settings(), ops_engine))
    assert client.get("/metrics").status_code == 200
    found = spans.get_finished_spans()
    (server,) = [s for s in found if s.kind == SpanKind.SERVER]
    assert server.name == "GET /metrics"
    assert server.parent is None
    assert server.attributes["http.route"] == "/metrics"
    queries = [s for s in children(server, found) if s.kind == SpanKind.CLIENT]
    statements = [str(s.attributes.get("db.statement", "")) for s in queries]
    assert any("from dictamesh_billing_invoices" in q for q in statements)
    assert any("from dictamesh_billing_outbox" in q for q in statements)
    assert {s.context.trace_id for s in found} == {server.context.trace_id}


def test_asset_run_span_carries_the_partition_key(
    spans: InMemorySpanExporter, warehouse: Warehouse, ops_engine: Engine, tmp_path: Path
) -> None:
    resource = TracedWarehouseResource(dsn=warehouse.libpq_url(), data_dir=str(tmp_path))
    result = dg.materialize(
        [usage_daily], resources={"warehouse": resource}, partition_key="2026-10-05"
    )
    assert result.success
    found = spans.get_finished_spans()
    (run,) = [s for s in found if s.name.startswith("dagster.run ")]
    assert run.parent is None
    assert run.attributes["dagster.run_id"] == result.run_id
    assert run.attributes["dagster.partition_key"] == "2026-10-05"
    assert run.name == "dagster.run usage_daily"
    assert run.attributes["dagster.step_key"] == "usage_daily"
    statements = [str(s.attributes.get("db.statement", "")) for s in children(run, found)]
    assert any("dictamesh_billing_usage_daily" in q for q in statements)


def test_kafka_and_stripe_helpers_name_their_spans(spans: InMemorySpanExporter) -> None:
    with tracing.kafka_produce_span("billing.invoice.created", key="42"):
        headers = dict(tracing.kafka_trace_headers())
    with tracing.stripe_span("payment_intents.create", **{"billing.invoice_id": 7}):
        pass
    produce, stripe = spans.get_finished_spans()
    assert produce.name == "send billing.invoice.created"
    assert produce.kind == SpanKind.PRODUCER
    assert produce.attributes["messaging.destination.name"] == "billing.invoice.created"
    assert headers["traceparent"].decode().split("-")[1] == f"{produce.context.trace_id:032x}"
    assert stripe.name == "stripe payment_intents.create"
    assert stripe.kind == SpanKind.CLIENT
    assert stripe.attributes["billing.invoice_id"] == 7


def test_a_stripe_call_is_one_client_span(spans: InMemorySpanExporter, stripe_server: str) -> None:
    api = StripeApi(STRIPE_TEST_API_KEY, api_base=stripe_server)
    api.create_customer(
        name="Traced", email=None, metadata={"organization": "traced"}, idempotency_key="trace-1"
    )
    (call,) = [s for s in spans.get_finished_spans() if s.name.startswith("stripe ")]
    assert call.name == "stripe customers.create"
    assert call.kind is SpanKind.CLIENT
    assert call.attributes is not None and call.attributes["rpc.system"] == "stripe"


def test_a_relay_batch_is_a_producer_span_whose_trace_the_messages_carry(
    spans: InMemorySpanExporter, ops_engine: Engine, kafka_broker: str
) -> None:
    topic = create_topic(kafka_broker)
    config = KafkaResource(bootstrap_servers=kafka_broker, topic=topic).producer_config()
    relay = Relay(ops_engine, config, topic)
    try:
        result = relay.run()
    finally:
        relay.close()
    assert result.published > 0
    produced = [s for s in spans.get_finished_spans() if s.kind is SpanKind.PRODUCER]
    assert produced and {s.name for s in produced} == {f"send {topic}"}
    trace_ids = {f"{s.context.trace_id:032x}" for s in produced}
    received = consume(kafka_broker, topic, expected=result.published)
    assert len(received) == result.published
    assert {m.headers["traceparent"].split("-")[1] for m in received} <= trace_ids
