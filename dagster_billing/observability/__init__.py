"""Metrics from the warehouse, OpenTelemetry traces, and Dagster run-failure records."""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from dagster_billing.observability.metrics import mount_metrics
from dagster_billing.observability.tracing import (
    configure_tracing,
    instrument_app,
    instrument_engine,
    kafka_produce_span,
    kafka_trace_headers,
    span,
    stripe_span,
)

API_SERVICE_NAME = "dictamesh-billing-api"


def observe_app(app: FastAPI, engine: Engine) -> None:
    """`/metrics` on the API, and (when OTEL_* asks) a span per request and per query."""
    mount_metrics(app, engine)
    configure_tracing(API_SERVICE_NAME)
    instrument_engine(engine)
    instrument_app(app)


__all__ = [
    "configure_tracing",
    "instrument_app",
    "instrument_engine",
    "kafka_produce_span",
    "kafka_trace_headers",
    "observe_app",
    "span",
    "stripe_span",
]
