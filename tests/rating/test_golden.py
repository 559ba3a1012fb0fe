"""Golden scenarios (tests/scenarios/*.yaml, expected *.json, arithmetic by hand in each
YAML's header) billed by `billing simulate`'s machinery.

A dbt run costs seconds, so all scenarios are billed in one run: each one's ids get a
prefix, the run bills up to the latest as_of, and each scenario keeps only its invoices
dated on or before its own as_of (later invoices cannot change earlier ones).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from sqlalchemy.engine import Engine

from dagster_billing.rating import simulate as sim
from dagster_billing.settings import load_settings
from dagster_billing.warehouse.database import Warehouse

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"
NAMES = sorted(p.stem for p in SCENARIOS.glob("*.yaml"))


def _prefixed(name: str, scenario: dict[str, Any]) -> dict[str, Any]:
    def pre(value: Any) -> str:
        return f"{name}/{value}"

    return {
        "organizations": [{**o, "id": pre(o["id"])} for o in scenario.get("organizations") or []],
        "subscriptions": [
            {**s, "id": pre(s["id"]), "organization": pre(s["organization"])}
            for s in scenario.get("subscriptions") or []
        ],
        "usage": [
            {**u, "organization": pre(u["organization"])} for u in scenario.get("usage") or []
        ],
    }


@pytest.fixture(scope="module")
def billed(engine: Engine, warehouse: Warehouse) -> dict[str, list[dict[str, Any]]]:
    """Every scenario's invoices from one simulate run, by scenario name."""
    scenarios = {name: yaml.safe_load((SCENARIOS / f"{name}.yaml").read_text()) for name in NAMES}
    combined: dict[str, Any] = {"organizations": [], "subscriptions": [], "usage": []}
    for name, scenario in scenarios.items():
        for key, rows in _prefixed(name, scenario).items():
            combined[key] += rows
    combined["as_of"] = max(str(s["as_of"]) for s in scenarios.values())
    result = sim.bill(engine, warehouse, load_settings(), combined)
    by_name: dict[str, list[dict[str, Any]]] = {name: [] for name in NAMES}
    for invoice in result["invoices"]:
        name, _, subscription = invoice["subscription"].partition("/")
        if invoice["billing_date"] <= str(scenarios[name]["as_of"]):
            by_name[name].append(
                {
                    **invoice,
                    "subscription": subscription,
                    "organization": invoice["organization"].partition("/")[2],
                }
            )
    return by_name


def _shape(invoice: dict[str, Any], expected: dict[str, Any]) -> dict[str, Any]:
    """The product's invoice cut to the fields the expected JSON states."""
    lines = [
        {key: line.get(key) for key in want}
        for line, want in zip(invoice["lines"], expected["lines"], strict=False)
    ]
    extra = invoice["lines"][len(expected["lines"]) :]
    return {**{k: invoice[k] for k in expected if k != "lines"}, "lines": lines + extra}


@pytest.mark.parametrize("name", NAMES)
def test_golden_scenario(name: str, billed: dict[str, list[dict[str, Any]]]) -> None:
    expected = json.loads((SCENARIOS / f"{name}.json").read_text())["invoices"]
    got = billed[name]
    assert [i["billing_date"] for i in got] == [i["billing_date"] for i in expected]
    for invoice, want in zip(got, expected, strict=True):
        assert _shape(invoice, want) == want
