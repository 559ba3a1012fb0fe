"""Small helpers shared by the usage tests: organizations, resources, gauge backfill text."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.resources import PrometheusResource, WarehouseResource
from dagster_billing.warehouse.database import Warehouse


def create_organizations(engine: Engine, *external_ids: str) -> dict[str, int]:
    """USD organizations through the customers write path; existing ones are reused."""
    from dagster_billing import customers

    ids: dict[str, int] = {}
    with engine.begin() as conn:
        for external in external_ids:
            try:
                ids[external] = customers.get_organization(conn, external)["id"]
            except customers.NotFoundError:
                ids[external] = customers.create_organization(
                    conn, external_id=external, name=external, currency="USD", actor="test"
                )["id"]
    return ids


def resources(warehouse: Warehouse, prometheus_url: str | None) -> dict[str, object]:
    return {
        "warehouse": WarehouseResource(
            dsn=warehouse.libpq_url(), data_dir=str(Path("/nonexistent"))
        ),
        "prometheus": PrometheusResource(url=prometheus_url, timeout_seconds=5),
    }


def openmetrics_gauge(
    name: str, samples: Iterable[tuple[Mapping[str, str], int | float | Decimal | str, datetime]]
) -> str:
    """One gauge family as OpenMetrics text (counters: conftest's `openmetrics_counter`)."""
    rows = sorted(
        (tuple(sorted(labels.items())), at.timestamp(), value) for labels, value, at in samples
    )
    lines = [f"# TYPE {name} gauge"]
    for labels, seconds, value in rows:
        rendered = ",".join(f'{k}="{v}"' for k, v in labels)
        lines.append(f"{name}{{{rendered}}} {value} {seconds!r}")
    return "\n".join(lines) + "\n"


def usage_rows(engine: Engine, hour: datetime) -> dict[tuple[str, str], Decimal]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select o.external_id, u.metric, u.quantity from dictamesh_billing_usage_metrics u"
                " join dictamesh_billing_organizations o on o.id = u.organization_id"
                " where u.hour_start = :hour"
            ),
            {"hour": hour},
        )
        return {(org, metric): quantity for org, metric, quantity in rows}


def create_subscription(
    engine: Engine, organization_id: int, plan: str, anchor: datetime, external_id: str
) -> int:
    """A monthly one-seat subscription through the customers write path."""
    from dagster_billing import customers

    with engine.begin() as conn:
        organization = conn.scalar(
            sa.text("select external_id from dictamesh_billing_organizations where id = :i"),
            {"i": organization_id},
        )
        return customers.create_subscription(
            conn,
            organization=organization,
            plan=plan,
            seats=1,
            start=anchor,
            external_id=external_id,
            actor="test",
        )["id"]


def insert_usage(
    engine: Engine, organization_id: int, metric: str, hour: datetime, quantity: Decimal | int
) -> None:
    from dagster_billing.warehouse.partitions import ensure_partitions_for

    with engine.begin() as conn:
        ensure_partitions_for(conn, hour, hour + timedelta(hours=1))
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_usage_metrics (organization_id, metric,"
                " hour_start, quantity, source) values (:org, :metric, :hour, :q, 'api')"
                " on conflict (organization_id, metric, hour_start)"
                " do update set quantity = excluded.quantity"
            ),
            {"org": organization_id, "metric": metric, "hour": hour, "q": quantity},
        )
