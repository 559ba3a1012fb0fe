"""Settings fail at start, with one line naming the variable, and never leak secrets."""

import socket
import time
from decimal import Decimal

import pytest

from dagster_billing.settings import ConfigError, load_settings
from dagster_billing.warehouse.database import connect


def test_defaults_follow_the_seed_configuration() -> None:
    settings = load_settings()
    assert settings.invoice_tax_rate == Decimal("0.10")
    assert settings.invoice_due_days == 30
    assert settings.invoice_number_prefix == "INV-"
    assert settings.invoice_default_currency == "USD"
    assert settings.usage_aggregation_interval == "1h"
    assert settings.usage_retention_days == 90
    assert settings.feature_tiered_pricing and settings.feature_credits


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("INVOICE_TAX_RATE", "1.5", "INVOICE_TAX_RATE: must be >= 0 and < 1, got 1.5"),
        ("INVOICE_TAX_RATE", "ten", "INVOICE_TAX_RATE: "),
        ("INVOICE_DEFAULT_CURRENCY", "XYZ", "INVOICE_DEFAULT_CURRENCY: no price book for 'XYZ'"),
        ("USAGE_AGGREGATION_INTERVAL", "7m", "USAGE_AGGREGATION_INTERVAL: only '1h' is supported"),
        ("USAGE_RETENTION_DAYS", "0", "USAGE_RETENTION_DAYS: "),
        ("INVOICE_DUE_DAYS", "-1", "INVOICE_DUE_DAYS: "),
        ("NOTIFICATION_SERVICE_URL", "not a url", "NOTIFICATION_SERVICE_URL: "),
        ("KAFKA_BOOTSTRAP_SERVERS", "broker", "KAFKA_BOOTSTRAP_SERVERS: "),
        ("FEATURE_CREDITS", "maybe", "FEATURE_CREDITS: "),
    ],
)
def test_bad_value_names_the_variable_in_one_line(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, message: str
) -> None:
    monkeypatch.setenv(variable, value)
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert str(error.value).startswith(message)
    assert "\n" not in str(error.value)


def test_stripe_enabled_without_a_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_ENABLED", "true")
    with pytest.raises(ConfigError, match="STRIPE_API_KEY: required"):
        load_settings()


def test_secrets_stay_out_of_reprs(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("STRIPE_API_KEY", "sk_live_supersecret")
    monkeypatch.setenv("STRIPE_WEBHOOK_SECRET", "whsec_supersecret")
    monkeypatch.setenv("BILLING_DATABASE_DSN", "postgresql://u:pw_supersecret@db.example/x")
    settings = load_settings()
    assert "supersecret" not in repr(settings)
    assert "supersecret" not in str(settings.model_dump())


def test_unreachable_database_fails_within_ten_seconds_naming_the_dsn() -> None:
    """A server that accepts TCP but never answers must not hang the platform."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        port = silent.getsockname()[1]
        dsn = f"postgresql://billing:pw_supersecret@127.0.0.1:{port}/billing"
        started = time.monotonic()
        with pytest.raises(ConfigError) as error:
            connect(load_settings(billing_database_dsn=dsn))
        elapsed = time.monotonic() - started
    assert str(error.value).startswith("BILLING_DATABASE_DSN: cannot connect to")
    assert "pw_supersecret" not in str(error.value)
    assert elapsed < 10


def test_refused_connection_fails_at_once() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(ConfigError, match=r"^BILLING_DATABASE_DSN: cannot connect"):
        connect(load_settings(billing_database_dsn=f"postgresql://x@127.0.0.1:{port}/x"))
