"""Late usage end to end: an hour imported after its invoice was finalized becomes an
adjustment line on the next invoice, through the real import, dbt run and finalization."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from dagster_billing.assets.rating import billing_dbt_models, billing_invoice_models
from dagster_billing.definitions import build_resources
from dagster_billing.invoicing.finalize import finalize_window
from dagster_billing.partitions import partition_range_tags
from dagster_billing.resources import WarehouseResource
from dagster_billing.settings import load_settings
from dagster_billing.usage.importer import import_usage
from dagster_billing.warehouse.database import Warehouse, make_engine
from tests.conftest import _create_database, _drop_database


def _import(engine: Engine, tmp_path: Path, name: str, rows: list[str]) -> int:
    path = tmp_path / f"{name}.csv"
    path.write_text("organization,metric,hour,quantity\n" + "\n".join(rows) + "\n")
    with engine.begin() as conn:
        return import_usage(conn, path).adjustments


def _subscribe(
    engine: Engine, name: str, start: datetime, cancel_at: datetime | None = None
) -> None:
    """Organization `name` on a monthly starter subscription `sub-<name>` from `start`."""
    with engine.begin() as conn:
        org = conn.scalar(
            sa.text(
                "insert into dictamesh_billing_organizations (external_id, name, currency)"
                " values (:name, :name, 'USD') returning id"
            ),
            {"name": name},
        )
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_subscriptions (external_id, organization_id,"
                " plan_id, billing_cycle, seats, billing_anchor, started_at, cancel_at) values"
                " (:sub, :org, 'starter', 'monthly', 3, :start, :start, :cancel_at)"
            ),
            {"sub": f"sub-{name}", "org": org, "start": start, "cancel_at": cancel_at},
        )


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
    _subscribe(engine, "late", datetime(2026, 4, 1, tzinfo=UTC))
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


@pytest.fixture
def fresh_warehouse(pg_server_url: URL, template_database: str) -> Iterator[Warehouse]:
    """A database of its own: the same story is told twice, once per way of running it."""
    created = _create_database(pg_server_url, template_database)
    yield created
    _drop_database(pg_server_url, created)


@pytest.mark.parametrize(
    "november",
    [("2026-11-01", "2026-11-01"), ("2026-10-01", "2026-11-01")],
    ids=["daily", "backfill"],
)
def test_late_usage_is_billed_on_the_next_invoice_by_daily_runs_and_by_one_backfill_run(
    fresh_warehouse: Warehouse, tmp_path: Path, november: tuple[str, str]
) -> None:
    """A subscription cancelled at the end of October: its November 1 invoice is its last,
    so a September correction that misses it is never billed."""
    engine = make_engine(fresh_warehouse)
    _subscribe(engine, "story", datetime(2026, 8, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
    _import(
        engine,
        tmp_path,
        "usage",
        [
            "story,api_calls,2026-09-03T10:00:00Z,3456789",
            "story,api_calls,2026-10-05T10:00:00Z,1500000",
        ],
    )
    resources = {
        **build_resources(load_settings()),
        "warehouse": WarehouseResource(dsn=fresh_warehouse.libpq_url(), data_dir=str(tmp_path)),
    }
    assert dg.materialize([billing_dbt_models], resources=resources).success
    _rate(resources, "2026-08-01", "2026-10-01")
    _finalize(engine, datetime(2026, 8, 1, tzinfo=UTC), datetime(2026, 10, 2, tzinfo=UTC))
    october = "sub-story/2026-10-01T00:00:00Z"

    # 643,000 more September calls arrive once the October 1 invoice is final
    assert _import(engine, tmp_path, "late", ["story,api_calls,2026-09-20T10:00:00Z,643000"]) == 1
    _rate(resources, *november)
    first, last = (datetime.fromisoformat(f"{key}T00:00:00+00:00") for key in november)
    _finalize(engine, first, last + timedelta(days=1))

    with engine.connect() as conn:
        invoices = conn.execute(
            sa.text(
                "select number, invoice_key, subtotal, total from dictamesh_billing_invoices"
                " order by period_start"
            )
        ).all()
        lines = conn.execute(
            sa.text(
                "select l.kind, l.amount, a.invoice_key from dictamesh_billing_invoice_line_items l"
                " join dictamesh_billing_invoices i on i.id = l.invoice_id"
                " left join dictamesh_billing_invoices a on a.id = l.adjusts_invoice_id"
                " where i.invoice_key = 'sub-story/2026-11-01T00:00:00Z' order by l.line_number"
            )
        ).all()
        pending = conn.scalar(
            sa.text(
                "select count(*) from dictamesh_billing_usage_adjustments where consumed_at is null"
            )
        )
    engine.dispose()
    # October 1 billed September at (3,456,789 - 1,000,000) / 1,000 x 0.01 = 24.57; with
    # the late calls it is 3,099.789 units = 31.00: +6.43 on the last invoice, beside
    # October's 500 units = 5.00. Subtotal 11.43, tax 10 % 1.14.
    assert [tuple(line) for line in lines] == [
        ("overage", Decimal("5.00"), None),
        ("adjustment", Decimal("6.43"), october),
    ]
    assert invoices[-1] == (
        "INV-2026-000004",
        "sub-story/2026-11-01T00:00:00Z",
        Decimal("11.43"),
        Decimal("12.57"),
    )
    assert [number for number, *_ in invoices] == [f"INV-2026-00000{n}" for n in range(1, 5)]
    assert pending == 0  # the adjustment line carried the correction: no longer pending
