"""One typed settings object, read from the environment names README and .env.example list.

Everything that reads configuration goes through `load_settings()`, so a bad value
fails once, at start, with one line naming the variable.
"""

from __future__ import annotations

from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import AnyHttpUrl, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from dagster_billing.catalog import catalog_currencies
from dagster_billing.redact import redact

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class ConfigError(Exception):
    """A configuration problem, phrased as `VARIABLE: what is wrong`."""


class Settings(BaseSettings):
    """Platform settings; secrets are SecretStr so they never reach a repr or a log."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", frozen=True)

    billing_database_dsn: SecretStr | None = None
    billing_data_dir: Path = PROJECT_ROOT / ".billing"
    dagster_pg_url: SecretStr | None = None

    stripe_api_key: SecretStr | None = None
    stripe_webhook_secret: SecretStr | None = None
    stripe_enabled: bool = False
    stripe_api_base: AnyHttpUrl | None = None
    payment_retry_schedule: str = "1,3,5,7"
    payment_charge_workers: int = Field(8, ge=1, le=64)

    invoice_due_days: int = Field(30, ge=0, le=365)
    invoice_number_prefix: str = Field("INV-", pattern=r"^[A-Za-z0-9_-]{0,16}$")
    invoice_tax_rate: Decimal = Decimal("0.10")
    invoice_default_currency: str = "USD"
    invoice_template_dir: Path | None = None
    invoice_pdf_workers: int = Field(1, ge=1, le=64)
    invoice_seller_name: str = "DictaMesh Inc."
    invoice_seller_address: str = "100 Mesh Street; San Francisco, CA 94105; United States"
    invoice_seller_tax_id: str = ""
    invoice_payment_instructions: str = (
        "Pay by bank transfer quoting the invoice number, or by card at billing.dictamesh.example."
    )

    usage_aggregation_interval: str = "1h"
    usage_retention_days: int = Field(90, ge=1, le=3650)
    usage_max_clock_skew_minutes: int = Field(5, ge=0, le=1440)
    usage_enable_realtime: bool = True

    notification_service_url: AnyHttpUrl = AnyHttpUrl("http://localhost:8080")
    notification_retry_attempts: int = Field(3, ge=0, le=20)
    notification_service_enabled: bool = False
    notification_email_from: str = "DictaMesh Billing <billing@dictamesh.example>"
    notification_renewal_days: int = Field(30, ge=1, le=365)
    smtp_host: str | None = None
    smtp_port: int = Field(587, ge=1, le=65535)
    smtp_tls: str = Field("starttls", pattern=r"^(starttls|ssl|none)$")
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    webhook_disable_after_days: int = Field(3, ge=1, le=90)

    feature_auto_payment: bool = True
    feature_usage_metrics: bool = True
    feature_tiered_pricing: bool = True
    feature_credits: bool = True

    prometheus_url: AnyHttpUrl | None = None
    kafka_bootstrap_servers: str | None = Field(None, pattern=r"^[\w.\-]+:\d+(,[\w.\-]+:\d+)*$")
    kafka_events_topic: str = Field("dictamesh.billing.events", pattern=r"^[A-Za-z0-9._-]{1,249}$")
    events_retention_days: int = Field(7, ge=1, le=3650)

    api_rate_limit: str = "100/second"
    api_rate_limit_storage: str = "memory://"

    @field_validator("billing_database_dsn", "dagster_pg_url")
    @classmethod
    def _is_a_postgres_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is not None and (problem := postgres_url_problem(value.get_secret_value())):
            raise ValueError(problem)
        return value

    @field_validator("invoice_tax_rate")
    @classmethod
    def _tax_rate_is_a_fraction(cls, value: Decimal) -> Decimal:
        if not value.is_finite() or not Decimal(0) <= value < Decimal(1):
            raise ValueError(f"must be >= 0 and < 1, got {value}")
        return value

    @field_validator("invoice_default_currency")
    @classmethod
    def _currency_has_a_price_book(cls, value: str) -> str:
        known = catalog_currencies()
        if value not in known:
            raise ValueError(f"no price book for {value!r} (catalog has {', '.join(known)})")
        return value

    @field_validator("invoice_template_dir")
    @classmethod
    def _template_dir_has_the_invoice(cls, value: Path | None) -> Path | None:
        if value is not None and not (value / "invoice.html").is_file():
            raise ValueError(f"must be a directory containing invoice.html, got {str(value)!r}")
        return value

    @field_validator("usage_aggregation_interval")
    @classmethod
    def _interval_is_supported(cls, value: str) -> str:
        if value != "1h":
            raise ValueError(f"only '1h' is supported, got {value!r}")
        return value

    @field_validator("api_rate_limit")
    @classmethod
    def _rate_limit_parses(cls, value: str) -> str:
        from limits import parse

        try:
            parse(value)
        except ValueError:
            raise ValueError(f"not a rate limit like '100/second', got {value!r}") from None
        return value

    @field_validator("api_rate_limit_storage")
    @classmethod
    def _rate_limit_storage_is_known(cls, value: str) -> str:
        if value.split("://", 1)[0] not in ("memory", "redis", "rediss", "memcached"):
            raise ValueError("must be memory://, redis://... or memcached://...")
        return value

    @field_validator("payment_retry_schedule")
    @classmethod
    def _retry_schedule_is_days(cls, value: str) -> str:
        parts = [part.strip() for part in value.split(",") if part.strip()]
        if not all(part.isdigit() and 1 <= int(part) <= 365 for part in parts):
            raise ValueError(f"must be comma-separated days (1-365), got {value!r}")
        days = [int(part) for part in parts]
        if days != sorted(set(days)):
            raise ValueError(f"days must increase, got {value!r}")
        return ",".join(parts)

    @property
    def payment_retry_days(self) -> tuple[int, ...]:
        """Days after the first failed charge on which it is retried (dunning)."""
        return tuple(int(part) for part in self.payment_retry_schedule.split(",") if part)

    @property
    def stripe_webhook_secrets(self) -> tuple[str, ...]:
        """Every secret a webhook may be signed with: several while one is being rotated."""
        if self.stripe_webhook_secret is None:
            return ()
        raw = self.stripe_webhook_secret.get_secret_value()
        return tuple(part.strip() for part in raw.split(",") if part.strip())

    @model_validator(mode="after")
    def _stripe_needs_a_key(self) -> Settings:
        if self.stripe_enabled and self.stripe_api_key is None:
            raise ValueError("STRIPE_API_KEY: required when STRIPE_ENABLED=true")
        return self


def postgres_url_problem(dsn: str) -> str | None:
    """What is wrong with `dsn` as a Postgres URL, without repeating it (it holds a password)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(dsn.replace("postgres://", "postgresql://", 1))
    except ArgumentError:
        return "not a URL; expected a URL like postgresql://db.internal:5432/billing"
    except ValueError:
        return "the port is not a number; expected a URL like postgresql://db.internal:5432/billing"
    if url.get_backend_name() != "postgresql":
        return f"must be a postgresql:// URL, got {url.drivername}://"
    return None


def _describe(error: dict[str, Any]) -> str:
    """Turn pydantic's error into `ENV_NAME: message`, the form operators grep for; a
    password inside a URL given is masked."""
    message = redact(str(error["msg"]).removeprefix("Value error, "))
    if not error["loc"]:
        return message
    name = str(error["loc"][0]).upper()
    given = error.get("input")
    secret = any(part in name for part in ("SECRET", "KEY", "DSN", "PG_URL"))
    if secret or given is None:
        return f"{name}: {message}"
    return (
        f"{name}: {message}, got {redact(repr(given))}"
        if "got " not in message
        else f"{name}: {message}"
    )


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment (and `.env`), raising ConfigError on a bad value."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise ConfigError(_describe(exc.errors()[0])) from None


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
