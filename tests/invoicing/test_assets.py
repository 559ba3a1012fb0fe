"""The invoicing assets and checks, materialized for one billing day on real Postgres."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.assets.invoicing import invoicing_assets, invoicing_checks
from dagster_billing.invoicing.checks import numbering_problems
from dagster_billing.resources import InvoicingResource, WarehouseResource
from dagster_billing.settings import load_settings
from dagster_billing.warehouse.database import Warehouse
from tests.invoicing.conftest import Billing, Line, day


def test_a_billing_day_is_finalized_rendered_and_checked_and_reruns_change_nothing(
    billing: Billing, engine: Engine, warehouse: Warehouse, tmp_path: Path
) -> None:
    for _ in range(3):
        billing.draft(billing.customer(), day(9, 1), [Line("Starter (monthly)", Decimal("49.00"))])
    resources = {
        "warehouse": WarehouseResource(dsn=warehouse.libpq_url(), data_dir=str(tmp_path)),
        "invoicing": InvoicingResource.from_settings(
            load_settings(billing_data_dir=tmp_path, invoice_number_prefix="AS-")
        ),
    }
    for _ in range(2):
        result = dg.materialize(
            [*invoicing_assets, *invoicing_checks], resources=resources, partition_key="2026-09-01"
        )
        assert result.success
        checks = result.get_asset_check_evaluations()
        assert {c.check_name: c.passed for c in checks} == {
            "invoice_totals_add_up": True,
            "invoice_numbers_gap_free": True,
            "every_invoice_has_a_pdf": True,
        }
    finalized = result.asset_materializations_for_node("invoices_finalized")[0].metadata
    assert finalized["finalized"].value == 0 and finalized["already_finalized"].value == 3
    assert sorted(p.name for p in (tmp_path / "invoices").iterdir()) == [
        "AS-2026-000001.pdf",
        "AS-2026-000002.pdf",
        "AS-2026-000003.pdf",
    ]
    with engine.connect() as conn:
        assert (
            conn.scalar(
                sa.text("select count(*) from dictamesh_billing_invoices where number like 'AS-%'")
            )
            == 3
        )


def test_the_numbering_check_sees_a_gap(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_invoice_number_counters (prefix, year, last_value)"
                " values ('GAP-', 2026, 2)"
            )
        )
        assert numbering_problems(conn) == [
            "GAP-2026: counter at 2, 0 invoices, 0 distinct numbers, highest 0"
        ]
        conn.rollback()
