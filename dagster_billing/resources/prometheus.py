"""Prometheus' HTTP API as a Dagster resource: raw samples, never extrapolated rates."""

from __future__ import annotations

import os
from datetime import datetime
from functools import cache
from typing import Any

import dagster as dg
import httpx

from dagster_billing.redact import redact


class PrometheusUnavailableError(Exception):
    """Prometheus could not answer; the run fails whole and the retry policy tries again."""


@cache
def _client(pid: int) -> httpx.Client:
    """One client per process (`pid` keys it, so a forked child makes its own): a client
    per query loaded the CA bundle each time, ~25 ms, more than the query itself, and
    opened a new connection."""
    return httpx.Client(trust_env=False)


class PrometheusResource(dg.ConfigurableResource):
    """The Prometheus named by PROMETHEUS_URL."""

    url: str | None = None
    timeout_seconds: float = 30.0

    def query(self, promql: str, at: datetime) -> list[dict[str, Any]]:
        """Instant query evaluated at `at`; returns `data.result` (matrix or vector)."""
        if not self.url:
            raise PrometheusUnavailableError("PROMETHEUS_URL: not set; usage cannot be read")
        endpoint = f"{self.url.rstrip('/')}/api/v1/query"
        params = {"query": promql, "time": f"{at.timestamp():.3f}"}
        where = redact(self.url)
        try:
            response = _client(os.getpid()).get(
                endpoint, params=params, timeout=self.timeout_seconds
            )
        except httpx.TimeoutException:
            raise PrometheusUnavailableError(
                f"Prometheus at {where} did not answer {promql!r} within {self.timeout_seconds:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise PrometheusUnavailableError(
                f"Prometheus at {where} unreachable for {promql!r}: {redact(exc)}"
            ) from None
        try:
            body = response.json()
        except ValueError:
            body = {}
        if response.status_code != 200 or body.get("status") != "success":
            reason = redact(body.get("error") or response.text[:200])
            raise PrometheusUnavailableError(
                f"Prometheus at {where} refused {promql!r} (HTTP {response.status_code}): {reason}"
            )
        return body["data"]["result"]
