"""Rating reads whole days from the daily rollup only while it is current: through the
real import, the usage_daily asset and the dbt run, a mid-day anchored period bills the
same amount from the hours, from the rollup, and after a write the rollup missed."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.assets.rating import billing_dbt_models, billing_invoice_models
from dagster_billing.assets.usage import usage_daily
from dagster_billing.definitions import build_resources
from dagster_billing.partitions import partition_range_tags
from dagster_billing.resources import WarehouseResource
from dagster_billing.settings import load_settings
from dagster_billing.usage.importer import import_usage
from dagster_billing.warehouse.database import Warehouse

ANCHOR = datetime(2026, 10, 1, 12, tzinfo=UTC)
INVOICE = "sub-rollup/2026-11-01T12:00:00Z"


def _import(engine: Engine, tmp_path: Path, name: str, rows: list[str]) -> None:
    path = tmp_path / f"{name}.csv"
    path.write_text("organization,metric,hour,quantity\n" + "\n".join(rows) + "\n")
    with engine.begin() as conn:
        import_usage(conn, path)


def _rate(resources: dict) -> tuple[Decimal, dict[str, int]]:
    """The Nov 1 api_calls overage, and its usage ranges by where they were read."""
    assert dg.materialize(
        [billing_invoice_models], resources=resources, partition_key="2026-11-01"
    ).success
    engine = resources["warehouse"].engine()
    with engine.connect() as conn:
        amount = conn.scalar(
            sa.text(
                "select amount from analytics.fct_invoice_line_items where invoice_key = :key"
                " and kind = 'overage' and metric = 'api_calls'"
            ),
            {"key": INVOICE},
        )
        days = dict(
            conn.execute(
                sa.text(
                    "select read_from, count(*) from analytics_intermediate.int_usage_ranges"
                    " where invoice_key = :key group by 1"
                ),
                {"key": INVOICE},
            ).all()
        )
    return amount, days


def test_rollup_days_are_billed_only_while_current(
    engine: Engine, warehouse: Warehouse, tmp_path: Path
) -> None:
    with engine.begin() as conn:
        org = conn.scalar(
            sa.text(
                "insert into dictamesh_billing_organizations (external_id, name, currency)"
                " values ('rollup', 'Rollup Ltd', 'USD') returning id"
            )
        )
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_subscriptions (external_id, organization_id,"
                " plan_id, billing_cycle, seats, billing_anchor, started_at) values"
                " ('sub-rollup', :org, 'starter', 'monthly', 3, :anchor, :anchor)"
            ),
            {"org": org, "anchor": ANCHOR},
        )
    # the period is [Oct 1 12:00, Nov 1 12:00): 11:00 on Oct 1 and 12:00 on Nov 1 are outside
    _import(
        engine,
        tmp_path,
        "october",
        [
            "rollup,api_calls,2026-10-01T11:00:00Z,1000000",
            "rollup,api_calls,2026-10-01T12:00:00Z,500000",
            "rollup,api_calls,2026-10-15T10:00:00Z,1500000",
            "rollup,api_calls,2026-11-01T11:00:00Z,200000",
            "rollup,api_calls,2026-11-01T12:00:00Z,9999",
        ],
    )
    resources = {
        **build_resources(load_settings()),
        "warehouse": WarehouseResource(dsn=warehouse.libpq_url(), data_dir=str(tmp_path)),
    }
    assert dg.materialize([billing_dbt_models], resources=resources).success
    # 2,200,000 calls - 1,000,000 included = 1,200 units x 0.01 = 12.00. No rollup yet:
    # the span of whole days Oct 2 .. Oct 31 has none current, so each of its 30 days
    # and the partial Oct 1 and Nov 1 are read from the hours
    assert _rate(resources) == (Decimal("12.00"), {"rollup": 1, "hours": 32})

    tags = partition_range_tags("2026-10-01", "2026-11-01")
    assert dg.materialize([usage_daily], resources=resources, tags=tags).success
    # Oct 2 .. Oct 31 from the rollup, only the partial Oct 1 and Nov 1 from the hours
    assert _rate(resources) == (Decimal("12.00"), {"rollup": 1, "hours": 2})

    # a late hour after the rollup: Oct 20 is read from the hours again, and billed
    _import(engine, tmp_path, "late", ["rollup,api_calls,2026-10-20T05:00:00Z,1000000"])
    # 3,200,000 - 1,000,000 = 2,200 units x 0.01 = 22.00
    assert _rate(resources) == (Decimal("22.00"), {"rollup": 1, "hours": 3})
