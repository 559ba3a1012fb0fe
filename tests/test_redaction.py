"""No setting's secret reaches the console, the Dagster event log or the compute logs.

Each secret setting gets a value no other text contains; a run fails on purpose with all
of them set, and every byte the run left behind is searched for each value.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from dagster_billing.assets.usage import UsageHourlyConfig, usage_hourly
from dagster_billing.settings import Settings
from dagster_billing.warehouse.database import Warehouse
from tests.conftest import free_port
from tests.usage.helpers import resources

DAGSTER = str(Path(sys.executable).with_name("dagster"))
ROOT = Path(__file__).resolve().parent.parent


def _secret_settings(port: int) -> dict[str, tuple[str, str]]:
    """Every secret-bearing setting -> (value, the secret inside it)."""
    values = {
        "BILLING_DATABASE_DSN": (
            f"postgresql://billing:pw-dsn-7f3a9@127.0.0.1:{port}/billing",
            "pw-dsn-7f3a9",
        ),
        "DAGSTER_PG_URL": (
            f"postgresql+psycopg2://dagster:pw-dagster-51c2@127.0.0.1:{port}/dagster",
            "pw-dagster-51c2",
        ),
        "PROMETHEUS_URL": (f"http://scraper:pw-prom-9e1d@127.0.0.1:{port}", "pw-prom-9e1d"),
        "STRIPE_API_KEY": ("sk_test_key-0b8e6d", "key-0b8e6d"),
        "STRIPE_WEBHOOK_SECRET": ("whsec_hook-44af2c", "hook-44af2c"),
        "NOTIFICATION_SERVICE_URL": (
            f"http://notify:pw-notify-3d7b@127.0.0.1:{port}",
            "pw-notify-3d7b",
        ),
        "SMTP_PASSWORD": ("pw-smtp-6a0f", "pw-smtp-6a0f"),
        "STRIPE_API_BASE": (f"http://stripe:pw-stripe-2b9c@127.0.0.1:{port}", "pw-stripe-2b9c"),
    }
    secret_fields = {
        name.upper()
        for name, field in Settings.model_fields.items()
        if "SecretStr" in str(field.annotation) or "Url" in str(field.annotation)
    }
    assert secret_fields <= set(values), (
        f"give these settings a secret: {secret_fields - set(values)}"
    )
    return values


def _leaks(text: str, secrets: list[str]) -> list[str]:
    return [secret for secret in secrets if secret in text]


def test_a_failing_run_leaves_no_secret_in_console_event_log_or_compute_logs(
    tmp_path: Path,
) -> None:
    port = free_port()
    settings = _secret_settings(port)
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text("telemetry:\n  enabled: false\n")
    env = {
        **os.environ,
        **{name: value for name, (value, _) in settings.items()},
        "DAGSTER_HOME": str(home),
    }
    run = subprocess.run(
        [
            DAGSTER,
            "asset",
            "materialize",
            "-m",
            "dagster_billing.definitions",
            "--select",
            "usage_partitions",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=600,
    )
    assert run.returncode != 0, "the run was meant to fail (warehouse unreachable)"
    assert "usage_partitions" in run.stdout + run.stderr
    secrets = [secret for _, secret in settings.values()]
    assert _leaks(run.stdout + run.stderr, secrets) == []
    stored = [path for path in home.rglob("*") if path.is_file()]
    assert any(path.suffix == ".db" for path in stored), "no event log written"
    assert any("compute_logs" in str(path) for path in stored), "no compute logs written"
    for path in stored:
        content = path.read_bytes().decode("utf-8", "replace")
        assert _leaks(content, secrets) == [], path


def test_a_prometheus_failure_names_the_url_without_its_password(
    warehouse: Warehouse,
) -> None:
    url = f"http://scraper:pw-prom-9e1d@127.0.0.1:{free_port()}"
    context = dg.build_asset_context(partition_key="2026-03-10-13:00")
    with pytest.raises(dg.Failure) as failure:
        usage_hourly(context=context, config=UsageHourlyConfig(), **resources(warehouse, url))
    assert "Prometheus at http://scraper:***@127.0.0.1:" in failure.value.description
    assert "pw-prom-9e1d" not in failure.value.description
