"""Golden finance scenarios (tests/scenarios/finance/*.yaml, expected *.json, arithmetic
by hand in each YAML's header): MRR movements and month-end MRR from the same models and
throw-away schema `billing simulate` uses."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import yaml
from sqlalchemy.engine import Engine

from dagster_billing.rating import simulate as sim
from dagster_billing.rating.scenario import parse_scenario
from dagster_billing.settings import load_settings
from dagster_billing.warehouse.database import Warehouse

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios" / "finance"
NAMES = sorted(p.stem for p in SCENARIOS.glob("*.yaml"))
MRR_MODELS = ("fct_mrr_movements", "fct_mrr")


def _money(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.01")), "f")


def _finance(engine: Engine, warehouse: Warehouse, raw: dict[str, Any]) -> dict[str, Any]:
    with engine.connect() as conn:
        scenario = parse_scenario(raw, sim.read_catalog(conn))
    with sim.isolated_schema(engine) as schema:
        with engine.begin() as conn:
            sim.load_scenario(conn, schema, scenario)
        sim.run_invoice_models(warehouse, schema, load_settings(), scenario.as_of, MRR_MODELS)
        with engine.connect() as conn:
            movements = conn.execute(
                sa.text(
                    "select o.external_id as organization, m.* from"
                    f" {schema}.fct_mrr_movements m join {schema}.dictamesh_billing_organizations o"
                    " on o.id = m.organization_id order by o.external_id, m.effective_at"
                )
            ).mappings()
            movements = [
                {
                    "organization": m["organization"],
                    "effective_at": m["effective_at"].strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "movement_type": m["movement_type"],
                    "currency": m["currency"],
                    "plan_id": m["plan_id"],
                    **{k: _money(m[k]) for k in ("amount", "amount_usd", "mrr")},
                }
                for m in movements
            ]
            # months up to as_of (fct_mrr runs on to the current month)
            mrr = conn.execute(
                sa.text(
                    "select o.external_id as organization, m.* from"
                    f" {schema}.fct_mrr m join {schema}.dictamesh_billing_organizations o"
                    " on o.id = m.organization_id where m.month <= :as_of"
                    " order by o.external_id, m.month"
                ),
                {"as_of": scenario.as_of},
            ).mappings()
            months = [
                {
                    "organization": m["organization"],
                    "month": m["month"].isoformat(),
                    **{
                        k: _money(m[k])
                        for k in ("mrr", "previous_mrr", "new_mrr", "expansion_mrr", "mrr_usd")
                    },
                    "movement": m["movement"],
                }
                for m in mrr
            ]
    return {"mrr_movements": movements, "mrr": months}


@pytest.mark.parametrize("name", NAMES)
def test_golden_finance_scenario(engine: Engine, warehouse: Warehouse, name: str) -> None:
    raw = yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text())
    expected = json.loads((SCENARIOS / f"{name}.json").read_text())
    assert _finance(engine, warehouse, raw) == expected
