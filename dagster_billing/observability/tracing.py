"""OpenTelemetry traces, off unless the standard `OTEL_*` variables ask for them.

Tracing starts when `OTEL_TRACES_EXPORTER` names an exporter (`otlp`, `console`) or an
OTLP endpoint is set (`OTEL_EXPORTER_OTLP_ENDPOINT` / `..._TRACES_ENDPOINT`), and never
when `OTEL_SDK_DISABLED=true`. The OTLP/HTTP exporter then reads its endpoint, headers,
timeout and compression from the same variables, and the resource from
`OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`. Without them every helper here is a
no-op costing one attribute lookup.

Other modules call `span(...)` around work worth seeing (a Stripe call, a Kafka
produce); `stripe_span` and `kafka_produce_span` give those the semantic-convention
names and attributes, and `kafka_trace_headers` carries the trace into the message.
"""

from __future__ import annotations

import os
import weakref
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry import propagate, trace
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import (
    BatchSpanProcessor,
    SimpleSpanProcessor,
    SpanExporter,
)
from opentelemetry.trace import Span, SpanKind
from sqlalchemy.engine import Engine

TRACER_NAME = "dagster_billing"
_provider: TracerProvider | None = None
_traced_engines: weakref.WeakSet[Engine] = weakref.WeakSet()


def tracing_requested(environ: Mapping[str, str] = os.environ) -> bool:
    """Whether the environment asks for traces (see the module docstring)."""
    if environ.get("OTEL_SDK_DISABLED", "").strip().lower() == "true":
        return False
    exporter = environ.get("OTEL_TRACES_EXPORTER", "").strip().lower()
    if exporter:
        return exporter != "none"
    return bool(
        environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    )


def _exporter_from_environment(environ: Mapping[str, str]) -> SpanExporter:
    if environ.get("OTEL_TRACES_EXPORTER", "").strip().lower() == "console":
        from opentelemetry.sdk.trace.export import ConsoleSpanExporter

        return ConsoleSpanExporter()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter()


def configure_tracing(
    service_name: str,
    exporter: SpanExporter | None = None,
    environ: Mapping[str, str] = os.environ,
) -> TracerProvider | None:
    """Install the process's tracer provider (once per process). With an
    explicit `exporter` (tests: the SDK's in-memory one) spans are exported as they end;
    otherwise the environment decides, and None means tracing stays off."""
    global _provider
    if exporter is None and not tracing_requested(environ):
        return None
    if _provider is None:
        resource = Resource.create({"service.name": service_name})  # OTEL_SERVICE_NAME wins
        _provider = TracerProvider(resource=resource)
        trace.set_tracer_provider(_provider)
    if exporter is not None:
        _provider.add_span_processor(SimpleSpanProcessor(exporter))
    else:
        _provider.add_span_processor(BatchSpanProcessor(_exporter_from_environment(environ)))
    return _provider


def tracing_enabled() -> bool:
    return _provider is not None


def instrument_engine(engine: Engine) -> Engine:
    """A span per statement on this engine, once (a no-op while tracing is off). Engines
    are instrumented one by one, not by patching `create_engine`: only the engines the
    API and the assets use are traced, each exactly once."""
    if _provider is None or engine in _traced_engines:
        return engine
    from opentelemetry.instrumentation.sqlalchemy.engine import EngineTracer
    from opentelemetry.metrics import NoOpMeter

    connections = NoOpMeter(TRACER_NAME).create_up_down_counter("db.client.connections.usage")
    EngineTracer(trace.get_tracer(TRACER_NAME, tracer_provider=_provider), engine, connections)
    _traced_engines.add(engine)
    return engine


def instrument_app(app: Any) -> None:
    """A server span per API request (a no-op while tracing is off)."""
    if _provider is None:
        return
    from opentelemetry.instrumentation.fastapi import FastAPIInstrumentor

    # Scrapes and probes every few seconds would drown the traces worth reading.
    excluded = os.environ.get("OTEL_PYTHON_FASTAPI_EXCLUDED_URLS", "healthz,metrics")
    FastAPIInstrumentor.instrument_app(app, tracer_provider=_provider, excluded_urls=excluded)


def tracer() -> trace.Tracer:
    """This package's tracer: from the provider configured here, else the global one
    (a no-op unless something else installed one)."""
    if _provider is not None:
        return _provider.get_tracer(TRACER_NAME)
    return trace.get_tracer(TRACER_NAME)


def shutdown_tracing() -> None:
    """Flush and stop exporting (process exit; tests). Helpers become no-ops again."""
    global _provider
    if _provider is not None:
        _provider.shutdown()
        _provider = None


@contextmanager
def span(
    name: str, kind: SpanKind = SpanKind.INTERNAL, attributes: Mapping[str, Any] | None = None
) -> Iterator[Span]:
    """A span around a block, child of the current one; exceptions are recorded on it."""
    clean = {k: v for k, v in (attributes or {}).items() if v is not None}
    with tracer().start_as_current_span(name, kind=kind, attributes=clean) as current:
        yield current


def stripe_span(operation: str, **attributes: Any) -> Any:
    """Around one Stripe API call, e.g. `stripe_span("payment_intents.create",
    **{"billing.invoice_id": 42})`. Never put keys, card data or amounts' owners' PII here."""
    return span(
        f"stripe {operation}",
        SpanKind.CLIENT,
        {"rpc.system": "stripe", "rpc.method": operation, "server.address": "api.stripe.com"}
        | attributes,
    )


def kafka_produce_span(topic: str, key: str | None = None, **attributes: Any) -> Any:
    """Around one Kafka produce, named and labelled as the messaging conventions say."""
    return span(
        f"send {topic}",
        SpanKind.PRODUCER,
        {
            "messaging.system": "kafka",
            "messaging.operation.type": "send",
            "messaging.destination.name": topic,
            "messaging.kafka.message.key": key,
        }
        | attributes,
    )


def kafka_trace_headers() -> list[tuple[str, bytes]]:
    """`traceparent` (and `tracestate`) of the current span as Kafka message headers, so
    a consumer can continue the trace; empty while tracing is off."""
    carrier: dict[str, str] = {}
    propagate.inject(carrier)
    return [(key, value.encode()) for key, value in carrier.items()]
