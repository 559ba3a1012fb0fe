"""Re-rating end to end: a month of issued invoices, a price fix of one tier, the
hand-computed diff, applied once, carried by the next invoice and never again."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import dagster as dg
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine
from typer.testing import CliRunner

from dagster_billing.assets.finance import rerate_diff
from dagster_billing.assets.rating import billing_dbt_models
from dagster_billing.catalog import DEFAULT_CATALOG, load_catalog
from dagster_billing.cli import app
from dagster_billing.definitions import build_resources
from dagster_billing.finance import rerate as rr
from dagster_billing.resources import WarehouseResource
from dagster_billing.settings import load_settings
from dagster_billing.usage.importer import import_usage
from dagster_billing.warehouse.database import Warehouse
from tests.rating.test_late_usage import _finalize, _rate

OCT, NOV, DEC = (datetime(2026, m, 1, tzinfo=UTC) for m in (10, 11, 12))
JAN = datetime(2027, 1, 1, tzinfo=UTC)
NOV_KEY = "sub-rerate/2026-11-01T00:00:00Z"
DEC_KEY = "sub-rerate/2026-12-01T00:00:00Z"


def _fixed_catalog(tmp_path: Path) -> Path:
    """The default catalog with API calls' first tier at 0.012 instead of 0.010."""
    text = DEFAULT_CATALOG.read_text()
    fixed = text.replace('version: "2026.11.1"', 'version: "2026.11.2-fix"').replace(
        '- {up_to: "10000", unit_price: "0.010000"}', '- {up_to: "10000", unit_price: "0.012000"}'
    )
    assert fixed.count("2026.11.2-fix") == 1 and "0.012000" in fixed
    path = tmp_path / "fixed.yaml"
    path.write_text(fixed)
    return path


def _lines(engine: Engine, key: str) -> list[tuple[str, Decimal, str | None, str]]:
    with engine.connect() as conn:
        return [
            (r.kind, r.amount, r.adjusts_invoice_key, r.description)
            for r in conn.execute(
                sa.text(
                    "select kind, amount, adjusts_invoice_key, description"
                    " from analytics.fct_invoice_line_items where invoice_key = :key"
                    " order by line_number"
                ),
                {"key": key},
            )
        ]


@pytest.fixture(scope="module")
def issued(engine: Engine, warehouse: Warehouse, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """October and November invoices of one Starter organization, finalized; 3,456,789
    API calls in October."""
    tmp = tmp_path_factory.mktemp("rerate")
    with engine.begin() as conn:
        org = conn.scalar(
            sa.text(
                "insert into dictamesh_billing_organizations (external_id, name, currency)"
                " values ('rerate', 'Rerate Ltd', 'USD') returning id"
            )
        )
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_subscriptions (external_id, organization_id,"
                " plan_id, billing_cycle, seats, billing_anchor, started_at) values"
                " ('sub-rerate', :org, 'starter', 'monthly', 3, :start, :start)"
            ),
            {"org": org, "start": OCT},
        )
    usage = tmp / "october.csv"
    usage.write_text(
        "organization,metric,hour,quantity\nrerate,api_calls,2026-10-03T10:00:00Z,3456789\n"
    )
    with engine.begin() as conn:
        import_usage(conn, usage)
    resources = {
        **build_resources(load_settings()),
        "warehouse": WarehouseResource(dsn=warehouse.libpq_url(), data_dir=str(tmp)),
    }
    assert dg.materialize([billing_dbt_models], resources=resources).success
    _rate(resources, "2026-10-01", "2026-11-01")
    _finalize(engine, OCT, datetime(2026, 11, 2, tzinfo=UTC))
    # (3,456,789 - 1,000,000) / 1,000 = 2,456.789 units x 0.01 = 24.56789 -> 24.57
    assert ("overage", Decimal("24.57"), None, "API calls overage") in _lines(engine, NOV_KEY)
    return {"resources": resources, "catalog": _fixed_catalog(tmp)}


def test_rerating_the_default_catalog_against_itself_changes_nothing(
    engine: Engine, warehouse: Warehouse, issued: dict
) -> None:
    result = rr.diff(engine, warehouse, load_settings(), load_catalog(), OCT, DEC)
    assert result.invoices == []
    assert "no differences" in rr.render_table(result)


def test_the_rerate_job_shows_the_diff_as_an_asset_and_applies_nothing(
    engine: Engine, issued: dict
) -> None:
    result = dg.materialize(
        [rerate_diff],
        resources=issued["resources"],
        run_config={
            "ops": {
                "rerate_diff": {
                    "config": {
                        "catalog_path": str(issued["catalog"]),
                        "window_start": "2026-10-01",
                        "window_end": "2026-12-01",
                    }
                }
            }
        },
    )
    assert result.success
    metadata = result.get_asset_materialization_events()[0].materialization.metadata
    assert metadata["catalog_version"].value == "2026.11.2-fix"
    assert metadata["invoices_changed"].value == 1
    assert "| API calls overage | 24.57 | 29.48 | 4.91 |" in metadata["diff"].value
    with engine.connect() as conn:
        applied = conn.scalar(sa.text("select count(*) from dictamesh_billing_rerate_adjustments"))
    assert applied == 0


def test_a_tier_price_fix_is_diffed_applied_once_and_carried_by_the_next_invoice(
    engine: Engine, warehouse: Warehouse, issued: dict
) -> None:
    fixed = rr.load_corrected_catalog(issued["catalog"])
    settings = load_settings()
    result = rr.diff(engine, warehouse, settings, fixed, OCT, DEC, "rerate")
    data = result.as_json()
    # only November has usage: 2,456.789 x 0.012 = 29.481468 -> 29.48; 29.48 - 24.57 = 4.91
    # subtotal 99 + 24.57 = 123.57 -> 128.48; tax 10%: 12.36 -> 12.85
    assert [inv["invoice_key"] for inv in data["invoices"]] == [NOV_KEY]
    november = data["invoices"][0]
    assert november["lines"] == [
        {
            "kind": "overage",
            "metric": "api_calls",
            "description": "API calls overage",
            "old": "24.57",
            "new": "29.48",
            "difference": "4.91",
        }
    ]
    assert november["totals"]["subtotal"] == {"old": "123.57", "new": "128.48"}
    assert november["totals"]["tax"] == {"old": "12.36", "new": "12.85"}
    assert november["adjustment"] == "4.91"

    with engine.begin() as conn:
        first = rr.apply(conn, result, actor="test")
    assert (first.applied, first.already_applied) == (1, 0)
    # the stale diff cannot be applied again, and a fresh one has nothing left
    with pytest.raises(rr.RerateError, match="another rerate"), engine.begin() as conn:
        rr.apply(conn, result, actor="test")
    again = rr.diff(engine, warehouse, settings, fixed, OCT, DEC, "rerate")
    assert again.invoices == []
    with engine.begin() as conn:
        assert rr.apply(conn, again, actor="test") == rr.ApplyResult(0, 0)
        audited = conn.execute(
            sa.text(
                "select entity_id, payload->>'amount' from dictamesh_billing_audit_log"
                " where action = 'invoice.rerated'"
            )
        ).all()
        number = conn.scalar(
            sa.text("select number from dictamesh_billing_invoices where invoice_key = :k"),
            {"k": NOV_KEY},
        )
    assert audited == [(number, "4.910000")]

    # December's invoice carries the correction, naming the invoice it corrects
    _rate(issued["resources"], "2026-12-01", "2026-12-01")
    description = f"Price correction (catalog 2026.11.2-fix): API calls overage ({number})"
    assert _lines(engine, DEC_KEY) == [
        ("subscription_fee", Decimal("99"), None, "Starter (monthly)"),
        ("adjustment", Decimal("4.91"), NOV_KEY, description),
    ]
    # once December is finalized, January does not carry it again
    _finalize(engine, DEC, datetime(2026, 12, 2, tzinfo=UTC))
    _rate(issued["resources"], "2027-01-01", "2027-01-01")
    assert [line[0] for line in _lines(engine, "sub-rerate/2027-01-01T00:00:00Z")] == [
        "subscription_fee"
    ]
    assert rr.diff(engine, warehouse, settings, fixed, OCT, JAN, "rerate").invoices == []


def test_rerate_command_refuses_bad_input_with_one_line(tmp_path: Path) -> None:
    runner = CliRunner()
    catalog = _fixed_catalog(tmp_path)
    cases = {
        ("--from", "2026-13-01", "--to", "2026-12-01"): "error: --from: not a date",
        ("--from", "2026-12-01", "--to", "2026-11-01"): "error: --to: must be after --from",
    }
    for window, message in cases.items():
        result = runner.invoke(app, ["rerate", "--catalog", str(catalog), *window])
        assert result.exit_code == 2, result.output
        lines = result.output.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith(message), result.output
