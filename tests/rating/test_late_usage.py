"""Late usage end to end: an hour imported after its invoice was finalized becomes an
adjustment line on the next invoice, through the real import, dbt run and finalization."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.assets.rating import billing_dbt_models, billing_invoice_models
from dagster_billing.definitions import build_resources
from dagster_billing.invoicing.finalize import finalize_window
from dagster_billing.partitions import partition_range_tags
from dagster_billing.resources import WarehouseResource
from dagster_billing.settings import load_settings
from dagster_billing.usage.importer import import_usage
from dagster_billing.warehouse.database import Warehouse


def _import(engine: Engine, tmp_path: Path, name: str, rows: list[str]) -> int:
    path = tmp_path / f"{name}.csv"
    path.write_text("organization,metric,hour,quantity\n" + "\n".join(rows) + "\n")
    with engine.begin() as conn:
        return import_usage(conn, path).adjustments


def _rate(resources: dict, first_day: str, last_day: str) -> None:
    tags = partition_range_tags(first_day, last_day)
    assert dg.materialize([billing_invoice_models], resources=resources, tags=tags).success


def _finalize(engine: Engine, start: datetime, end: datetime) -> None:
    with engine.begin() as conn:
        finalize_window(conn, start, end, prefix="INV-", due_days=30)


def _draft_lines(engine: Engine, key: str) -> list[tuple[str, Decimal, str | None]]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select kind, amount, adjusts_invoice_key from analytics.fct_invoice_line_items"
                " where invoice_key = :key order by line_number"
            ),
            {"key": key},
        )
        return [(r.kind, r.amount, r.adjusts_invoice_key) for r in rows]


def test_late_usage_after_finalization_goes_to_next_invoice(
    engine: Engine, warehouse: Warehouse, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        org = conn.scalar(
            sa.text(
                "insert into dictamesh_billing_organizations (external_id, name, currency)"
                " values ('late', 'Late Ltd', 'USD') returning id"
            )
        )
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_subscriptions (external_id, organization_id,"
                " plan_id, billing_cycle, seats, billing_anchor, started_at) values"
                " ('sub-late', :org, 'starter', 'monthly', 3, :start, :start)"
            ),
            {"org": org, "start": datetime(2026, 4, 1, tzinfo=UTC)},
        )
    _import(engine, tmp_path, "april", ["late,api_calls,2026-04-03T10:00:00Z,3456789"])
    resources = {
        **build_resources(load_settings()),
        "warehouse": WarehouseResource(dsn=warehouse.libpq_url(), data_dir=str(tmp_path)),
    }
    assert dg.materialize([billing_dbt_models], resources=resources).success
    _rate(resources, "2026-04-01", "2026-05-01")
    _finalize(engine, datetime(2026, 4, 1, tzinfo=UTC), datetime(2026, 5, 2, tzinfo=UTC))
    may = "sub-late/2026-05-01T00:00:00Z"
    # (3,456,789 - 1,000,000) / 1,000 = 2,456.789 units x 0.01 = 24.57
    assert ("overage", Decimal("24.57"), None) in _draft_lines(engine, may)

    # 643,000 calls for an April hour arrive after May 1 was finalized
    assert _import(engine, tmp_path, "late", ["late,api_calls,2026-04-20T10:00:00Z,643000"]) == 1
    _rate(resources, "2026-06-01", "2026-06-01")
    june = "sub-late/2026-06-01T00:00:00Z"
    # April now: 3,099.789 units x 0.01 = 30.99789 -> 31.00; billed 24.57; +6.43
    assert _draft_lines(engine, june) == [
        ("subscription_fee", Decimal("99"), None),
        ("adjustment", Decimal("6.43"), may),
    ]
    _finalize(engine, datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 2, tzinfo=UTC))
    with engine.connect() as conn:
        adjusted = conn.execute(
            sa.text(
                "select l.amount, a.invoice_key from dictamesh_billing_invoice_line_items l"
                " join dictamesh_billing_invoices i on i.id = l.invoice_id"
                " join dictamesh_billing_invoices a on a.id = l.adjusts_invoice_id"
                " where i.invoice_key = :june and l.kind = 'adjustment'"
            ),
            {"june": june},
        ).one()
    assert (adjusted.amount, adjusted.invoice_key) == (Decimal("6.43"), may)

    # re-rating June once it is finalized finds nothing left to adjust
    _rate(resources, "2026-06-01", "2026-06-01")
    assert [line[0] for line in _draft_lines(engine, june)] == ["subscription_fee"]
