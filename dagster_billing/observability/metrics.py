"""Where the warehouse metrics are served: `/metrics` on the API app, or on their own
(`billing metrics serve`) for deployments without the API. Each serving process also
reports its own process, platform and GC metrics."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from fastapi import FastAPI, Response
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    GC_COLLECTOR,
    PLATFORM_COLLECTOR,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    generate_latest,
    start_http_server,
)
from sqlalchemy.engine import Engine

from dagster_billing.observability.collector import WarehouseCollector

DEFAULT_PORT = 9109
METRICS_PATH = "/metrics"


def build_registry(engine: Engine, dbt_schema: str = "analytics") -> CollectorRegistry:
    """A registry of its own (not the global one that metering and assets count into):
    the warehouse figures plus this process's own metrics."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(WarehouseCollector(engine, dbt_schema))
    for collector in (PROCESS_COLLECTOR, PLATFORM_COLLECTOR, GC_COLLECTOR):
        registry.register(collector)
    return registry


def mount_metrics(app: FastAPI, engine: Engine, dbt_schema: str = "analytics") -> None:
    """`GET /metrics` on the app, in the Prometheus text format. A plain sync route: the
    warehouse queries run in the threadpool, never on the event loop."""
    registry = build_registry(engine, dbt_schema)

    @app.get(METRICS_PATH, include_in_schema=False)
    def metrics() -> Response:
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


@contextmanager
def serving(engine: Engine, host: str, port: int) -> Iterator[int]:
    """Serve the registry over HTTP until the block ends; yields the bound port."""
    server, thread = start_http_server(port, addr=host, registry=build_registry(engine))
    try:
        yield server.server_port
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
