"""Prometheus' HTTP API as a Dagster resource: raw samples, never extrapolated rates."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import dagster as dg
import httpx

from dagster_billing.redact import redact


class PrometheusUnavailableError(Exception):
    """Prometheus could not answer; the run fails whole and the retry policy tries again."""


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
            response = httpx.get(
                endpoint, params=params, timeout=self.timeout_seconds, trust_env=False
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
