"""Usage metering for DictaMesh services, on prometheus_client.

Services record usage here; Prometheus scrapes it; `usage_hourly` reads the raw samples
back and bills the exact increments. So the series must stay few (an id in an endpoint
label would create one series per request) and every `organization` label must be a
real organization (a typo would otherwise be metered and never billed). Both are guarded
here, before a series exists. Quantities are raw units: calls and bytes (Prometheus
base units); the warehouse converts bytes to GB.

Multiprocess servers (gunicorn, uvicorn workers): set `PROMETHEUS_MULTIPROC_DIR` before
import as prometheus_client documents; `metrics_registry()` then aggregates all workers.
"""

from __future__ import annotations

import math
import os
import re
import threading
from collections.abc import Callable, Iterable
from decimal import Decimal
from typing import Any

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, start_http_server
from prometheus_client.multiprocess import MultiProcessCollector

PREFIX = "dictamesh_billing_usage_"
API_CALLS = f"{PREFIX}api_calls"
STORAGE_BYTES = f"{PREFIX}storage_bytes"
TRANSFER_BYTES = f"{PREFIX}transfer_bytes"
QUERY_PROCESSING_BYTES = f"{PREFIX}query_processing_bytes"
REJECTED = f"{PREFIX}recordings_rejected"

# Billing metric id -> Prometheus series name as scraped (counters gain `_total`).
SERIES_BY_METRIC = {
    "api_calls": f"{API_CALLS}_total",
    "storage": STORAGE_BYTES,
    "transfer": f"{TRANSFER_BYTES}_total",
    "query_processing": f"{QUERY_PROCESSING_BYTES}_total",
}

METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"})
DIRECTIONS = frozenset({"in", "out"})
ID_SEGMENT = ":id"
OTHER_ENDPOINT = ":other"
MAX_ENDPOINT_LENGTH = 128
DEFAULT_MAX_ENDPOINTS = 500

_ID_PATTERNS = (
    re.compile(r"^\d+$"),
    re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$"),
    re.compile(r"^[0-9a-fA-F]{16,}$"),
    re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$"),  # ULID
    re.compile(r"^(?=.*\d)[A-Za-z0-9_\-]{20,}$"),  # opaque tokens with digits
)
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,31}$")


def normalize_endpoint(endpoint: str) -> str:
    """One label value per route, not per request: ids become `:id`, query strings go."""
    path = endpoint.split("?", 1)[0].split("#", 1)[0]
    segments = [s for s in path.split("/") if s]
    normalized = [ID_SEGMENT if any(p.match(s) for p in _ID_PATTERNS) else s for s in segments]
    result = "/" + "/".join(normalized)
    return result if len(result) <= MAX_ENDPOINT_LENGTH else OTHER_ENDPOINT


def normalize_method(method: str) -> str:
    upper = method.upper()
    return upper if upper in METHODS else "OTHER"


def _amount(field: str, value: int | float | Decimal) -> float:
    """Bytes are whole, finite, non-negative: a counter cannot go down and NaN bills nothing."""
    number = float(value)
    if not math.isfinite(number) or number < 0 or number != int(number):
        raise ValueError(f"{field}: must be a whole number of bytes >= 0, got {value!r}")
    return number


class Meter:
    """The four usage metrics with their guards. `organizations` is the allow-list: a set
    of external ids, or a callable answering for one id (e.g. a cached warehouse lookup)."""

    def __init__(
        self,
        registry: CollectorRegistry | None = REGISTRY,
        organizations: Iterable[str] | Callable[[str], bool] = (),
        enabled: bool = True,
        max_endpoints: int = DEFAULT_MAX_ENDPOINTS,
    ) -> None:
        self.enabled = enabled
        self.max_endpoints = max_endpoints
        self._lock = threading.Lock()
        self._endpoints: set[str] = set()
        self.set_organizations(organizations)
        self.api_calls = Counter(
            API_CALLS,
            "API calls per organization, endpoint route and method.",
            ["organization", "endpoint", "method"],
            registry=registry,
        )
        self.storage = Gauge(
            STORAGE_BYTES,
            "Bytes stored per organization and kind (metadata, documents, ...).",
            ["organization", "kind"],
            registry=registry,
            multiprocess_mode="mostrecent",
        )
        self.transfer = Counter(
            TRANSFER_BYTES,
            "Bytes transferred per organization and direction.",
            ["organization", "direction"],
            registry=registry,
        )
        self.query_processing = Counter(
            QUERY_PROCESSING_BYTES,
            "Bytes scanned by queries per organization.",
            ["organization"],
            registry=registry,
        )
        self.rejected = Counter(
            REJECTED,
            "Recordings refused before they became a series, by reason.",
            ["reason"],
            registry=registry,
        )

    def set_organizations(self, organizations: Iterable[str] | Callable[[str], bool]) -> None:
        """Replace the allow-list (call it again when organizations are created)."""
        if callable(organizations):
            self._known: Callable[[str], bool] = organizations
        else:
            allowed = frozenset(organizations)
            self._known = allowed.__contains__

    def _accept(self, organization: str) -> bool:
        if not self.enabled:
            return False
        if not self._known(organization):
            self.rejected.labels("unknown_organization").inc()
            return False
        return True

    def _endpoint(self, endpoint: str) -> str:
        route = normalize_endpoint(endpoint)
        with self._lock:
            if route in self._endpoints:
                return route
            if len(self._endpoints) >= self.max_endpoints:
                self.rejected.labels("endpoint_limit").inc()
                return OTHER_ENDPOINT
            self._endpoints.add(route)
            return route

    def record_api_call(self, organization: str, endpoint: str, method: str) -> bool:
        """Count one API call; False when metering is off or the organization is unknown."""
        if not self._accept(organization):
            return False
        self.api_calls.labels(
            organization, self._endpoint(endpoint), normalize_method(method)
        ).inc()
        return True

    def record_storage(self, organization: str, kind: str, size_bytes: int | Decimal) -> bool:
        """Set the bytes an organization stores of one kind (a gauge: the current total)."""
        amount = _amount("size_bytes", size_bytes)
        if not _KIND.match(kind):
            raise ValueError(f"kind: must match {_KIND.pattern}, got {kind!r}")
        if not self._accept(organization):
            return False
        self.storage.labels(organization, kind).set(amount)
        return True

    def record_transfer(self, organization: str, direction: str, size_bytes: int | Decimal) -> bool:
        """Add transferred bytes; both directions are billed as data transfer."""
        amount = _amount("size_bytes", size_bytes)
        if direction not in DIRECTIONS:
            raise ValueError(f"direction: must be 'in' or 'out', got {direction!r}")
        if not self._accept(organization):
            return False
        self.transfer.labels(organization, direction).inc(amount)
        return True

    def record_query_processing(self, organization: str, scanned_bytes: int | Decimal) -> bool:
        """Add bytes a query scanned."""
        amount = _amount("scanned_bytes", scanned_bytes)
        if not self._accept(organization):
            return False
        self.query_processing.labels(organization).inc(amount)
        return True


_default: Meter | None = None
_default_lock = threading.Lock()


def default_meter() -> Meter:
    """The process meter on the global registry, enabled by FEATURE_USAGE_METRICS."""
    global _default
    with _default_lock:
        if _default is None:
            from dagster_billing.settings import get_settings

            _default = Meter(enabled=get_settings().feature_usage_metrics)
        return _default


def configure(organizations: Iterable[str] | Callable[[str], bool]) -> Meter:
    """Give the process meter its allow-list; until then every recording is rejected."""
    meter = default_meter()
    meter.set_organizations(organizations)
    return meter


def record_api_call(organization: str, endpoint: str, method: str) -> bool:
    return default_meter().record_api_call(organization, endpoint, method)


def record_storage(organization: str, kind: str, size_bytes: int | Decimal) -> bool:
    return default_meter().record_storage(organization, kind, size_bytes)


def record_transfer(organization: str, direction: str, size_bytes: int | Decimal) -> bool:
    return default_meter().record_transfer(organization, direction, size_bytes)


def record_query_processing(organization: str, scanned_bytes: int | Decimal) -> bool:
    return default_meter().record_query_processing(organization, scanned_bytes)


def metrics_registry() -> CollectorRegistry:
    """What /metrics should expose: every worker's values in multiprocess mode."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return registry
    return REGISTRY


def start_metrics_server(port: int, addr: str = "127.0.0.1") -> Any:
    """Serve /metrics on its own port (for workers without an HTTP app of their own)."""
    return start_http_server(port, addr=addr, registry=metrics_registry())
