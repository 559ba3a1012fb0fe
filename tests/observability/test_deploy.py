"""deploy/: the alert rules pass promtool's checks and unit tests, and every dashboard
query returns series from a real Prometheus scraping the real API app."""

from __future__ import annotations

import json
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvicorn
import yaml
from sqlalchemy.engine import Engine

from dagster_billing.api import create_app
from dagster_billing.settings import PROJECT_ROOT, load_settings
from tests.conftest import ServiceStartError, free_port, start_prometheus

DEPLOY = PROJECT_ROOT / "deploy"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
ALERT_TESTS = DEPLOY / "prometheus" / "alerts.test.yml"
DASHBOARD = DEPLOY / "grafana" / "dictamesh-billing.json"


def promtool(*args: str | Path) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("promtool")
    if binary is None:
        raise ServiceStartError("promtool: not found on PATH; it ships with Debian's prometheus")
    return subprocess.run(
        [binary, *map(str, args)], capture_output=True, text=True, timeout=120, check=False
    )


def test_alert_rules_pass_promtool_check() -> None:
    done = promtool("check", "rules", ALERTS)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


def test_alert_rules_unit_tests_pass() -> None:
    done = promtool("test", "rules", ALERT_TESTS)
    assert done.returncode == 0, done.stdout + done.stderr


def test_compose_prometheus_config_is_valid() -> None:
    done = promtool("check", "config", DEPLOY / "prometheus" / "prometheus.yml")
    assert done.returncode == 0, done.stdout + done.stderr


def test_every_alert_is_tested_firing_and_quiet() -> None:
    alerts = {r["alert"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]}
    seed = {
        "BillingPaymentFailureRateHigh",
        "BillingInvoiceCollectionRateLow",
        "BillingUsageSpike",
        "BillingCreditBalanceNegative",
        "BillingOutboxStalled",
        "BillingUsageIngestLate",
    }
    assert seed <= alerts
    firing, quiet = set(), set()
    for test in yaml.safe_load(ALERT_TESTS.read_text())["tests"]:
        for case in test["alert_rule_test"]:
            (firing if case["exp_alerts"] else quiet).add(case["alertname"])
    assert firing == alerts
    assert quiet == alerts


def dashboard_queries() -> list[tuple[str, str]]:
    panels = json.loads(DASHBOARD.read_text())["panels"]
    return [(p["title"], t["expr"]) for p in panels for t in p["targets"]]


def test_dashboard_has_the_seed_panels() -> None:
    titles = " | ".join(title for title, _ in dashboard_queries())
    for wanted in (
        "MRR",
        "ARR",
        "subscriptions by plan",
        "Payment success rate",
        "Invoice aging",
        "Usage trend",
        "Outbox lag",
    ):
        assert wanted in titles


@pytest.fixture
def api_port(ops_engine: Engine) -> Iterator[int]:
    """The real API app on a loopback port, served by uvicorn in a thread."""
    port = free_port()
    app = create_app(load_settings(), ops_engine)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        assert time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    yield port
    server.should_exit = True
    thread.join(timeout=30)


def test_every_dashboard_query_returns_series(api_port: int, tmp_path: Path) -> None:
    with start_prometheus(tmp_path, scrape_targets=[f"127.0.0.1:{api_port}"]) as prometheus:
        # Rates need two scrapes of each series.
        prometheus.wait_for("count_over_time(dictamesh_billing_mrr[1h]) >= 2", timeout=60)
        empty = [
            f"{title}: {expr}" for title, expr in dashboard_queries() if not prometheus.query(expr)
        ]
        assert empty == []
        up = prometheus.query('up{job="targets"}')
        assert [float(s["value"][1]) for s in up] == [1.0]
