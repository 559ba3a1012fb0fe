"""The warehouse as a Dagster resource: one engine per run, embedded server on demand."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import PrivateAttr
from sqlalchemy.engine import Engine

from dagster_billing.settings import Settings
from dagster_billing.warehouse.database import Warehouse, make_engine, resolve_warehouse


class WarehouseResource(dg.ConfigurableResource):
    """Postgres named by `dsn`, or the embedded server in `data_dir` when `dsn` is empty."""

    dsn: str | None = None
    data_dir: str
    dbt_schema: str = "analytics"
    usage_retention_days: int = Settings.model_fields["usage_retention_days"].default

    _warehouse: Warehouse | None = PrivateAttr(default=None)
    _engine: Engine | None = PrivateAttr(default=None)

    def _resolve(self) -> Warehouse:
        if self._warehouse is None:
            self._warehouse = resolve_warehouse(self.dsn, Path(self.data_dir))
        return self._warehouse

    @property
    def warehouse(self) -> Warehouse:
        return self._resolve()

    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = make_engine(self._resolve())
        return self._engine

    def dbt_env(self) -> dict[str, str]:
        """dbt reads its profile from the environment: the values that point it here."""
        return dbt_env(self._resolve(), self.dbt_schema)

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if self._engine is not None:
            self._engine.dispose()


def dbt_env(warehouse: Warehouse, schema: str) -> dict[str, str]:
    """The variables `dbt_project/profiles.yml` reads; no credential is written to a file."""
    url = warehouse.url
    host = url.query.get("host") or url.host or "localhost"
    return {
        "BILLING_DBT_HOST": str(host),
        "BILLING_DBT_PORT": str(url.port or 5432),
        "BILLING_DBT_USER": url.username or "postgres",
        "BILLING_DBT_PASSWORD": url.password or "",
        "BILLING_DBT_DBNAME": url.database or "postgres",
        "BILLING_DBT_SCHEMA": schema,
    }
