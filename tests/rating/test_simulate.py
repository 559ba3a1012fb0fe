"""`billing simulate`: the command's contract (docs/scenario-format.md) and its isolation."""

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
from dagster_billing.rating.scenario import ScenarioError, parse_scenario
from dagster_billing.settings import load_settings
from dagster_billing.warehouse.database import Warehouse
from tests.test_cli import billing

BASE: dict[str, Any] = {
    "as_of": "2026-05-01T00:00:00Z",
    "organizations": [{"id": "acme", "name": "Acme Corp", "currency": "USD"}],
    "subscriptions": [
        {
            "id": "sub-1",
            "organization": "acme",
            "plan": "starter",
            "cycle": "monthly",
            "seats": 5,
            "start": "2026-04-01T00:00:00Z",
        }
    ],
    "usage": [
        {
            "organization": "acme",
            "metric": "transfer",
            "hour": "2026-04-03T10:00:00Z",
            "quantity": "1600",
        }
    ],
}


def _write(tmp_path: Path, scenario: dict[str, Any]) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(scenario))
    return path


def _source_counts(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        tables = conn.scalars(
            sa.text(
                "select tablename from pg_tables where schemaname = 'public'"
                " and tablename like 'dictamesh_billing_%' and tablename not like '%_p2%'"
            )
        ).all()
        return {t: conn.scalar(sa.text(f"select count(*) from {t}")) for t in tables}


def _schemas(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.scalars(sa.text("select nspname from pg_namespace")).all())


def test_simulate_json_prints_invoices_and_leaves_production_alone(
    warehouse: Warehouse, engine: Engine, tmp_path: Path
) -> None:
    before, schemas = _source_counts(engine), _schemas(engine)
    result = billing("simulate", str(_write(tmp_path, BASE)), "--json", dsn=warehouse.libpq_url())
    assert result.returncode == 0, result.stderr[-3000:]
    invoices = json.loads(result.stdout)["invoices"]
    assert [i["billing_date"] for i in invoices] == ["2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z"]
    # May 1: fee 99 + seats (5 - 3) x 49 = 98; transfer 1,600 - 100 GB = 1,500 GB graduated:
    # 1,000 x 0.50 + 500 x 0.25 = 625.00; subtotal 822.00; tax 82.20; total 904.20
    may = invoices[1]
    assert [(line["kind"], line["amount"]) for line in may["lines"]] == [
        ("subscription_fee", "99.00"),
        ("seats", "98.00"),
        ("overage", "625.00"),
    ]
    assert (may["subtotal"], may["tax"], may["total"], may["amount_due"]) == (
        "822.00",
        "82.20",
        "904.20",
        "904.20",
    )
    assert _source_counts(engine) == before
    assert _schemas(engine) == schemas


def test_simulate_table_is_readable(warehouse: Warehouse, tmp_path: Path) -> None:
    result = billing("simulate", str(_write(tmp_path, BASE)), dsn=warehouse.libpq_url())
    assert result.returncode == 0, result.stderr[-3000:]
    assert "sub-1 (acme)  billing date 2026-05-01T00:00:00Z  USD" in result.stdout
    assert "Data transfer overage" in result.stdout and "904.20" in result.stdout


def _with(path: str, value: Any) -> dict[str, Any]:
    """BASE with one field replaced, the field given as e.g. "subscriptions.0.plan"."""
    scenario = json.loads(json.dumps(BASE))
    *parents, leaf = path.split(".")
    node: Any = scenario
    for part in parents:
        node = node[int(part)] if part.isdigit() else node[part]
    node[int(leaf) if leaf.isdigit() else leaf] = value
    return scenario


BAD = [
    (_with("subscriptions.0.plan", "gold"), "subscriptions[0].plan: unknown plan 'gold'"),
    (_with("usage.0.metric", "gpu_hours"), "usage[0].metric: unknown metric 'gpu_hours'"),
    (_with("usage.0.quantity", "-5"), "usage[0].quantity: must be >= 0, got -5"),
    (_with("usage.0.quantity", "lots"), "usage[0].quantity: not a number: 'lots'"),
    (
        _with("subscriptions.0.changes", [{"at": "2026-03-01T00:00:00Z", "seats": 6}]),
        "subscriptions[0].changes[0].at: before the subscription's start",
    ),
    (
        _with("organizations.0.currency", "CHF"),
        "organizations[0].currency: no price book for currency 'CHF'",
    ),
    (_with("usage.0.hour", "2026-13-45T10:00:00Z"), "usage[0].hour: not an ISO-8601 timestamp"),
    (
        _with("subscriptions.0.plan", "free"),
        "subscriptions[0].seats: plan 'free' sells no extra seats",
    ),
    (
        _with(
            "subscriptions",
            [*BASE["subscriptions"], {**BASE["subscriptions"][0], "id": "sub-2"}],
        ),
        "subscriptions[1].start: overlaps subscription 'sub-1'",
    ),
]


@pytest.mark.parametrize(("scenario", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_scenario_error_names_the_field(
    engine: Engine, scenario: dict[str, Any], message: str
) -> None:
    with engine.connect() as conn, pytest.raises(ScenarioError) as caught:
        parse_scenario(scenario, sim.read_catalog(conn))
    assert message in str(caught.value) and "\n" not in str(caught.value)


def test_bad_scenario_exits_with_one_line_and_no_invoice(
    warehouse: Warehouse, tmp_path: Path
) -> None:
    scenario, message = BAD[0]
    result = billing(
        "simulate", str(_write(tmp_path, scenario)), "--json", dsn=warehouse.libpq_url()
    )
    assert result.returncode == 2
    assert result.stdout == ""
    assert (
        result.stderr
        == f"error: {message} (expected one of: enterprise, free, professional, starter)\n"
    )


def test_malformed_yaml_is_one_line(warehouse: Warehouse, tmp_path: Path) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text("as_of: [unclosed\n")
    result = billing("simulate", str(path), dsn=warehouse.libpq_url())
    assert result.returncode == 2 and result.stdout == ""
    assert "not valid YAML" in result.stderr


def _bill(engine: Engine, warehouse: Warehouse, scenario: dict[str, Any], **settings: Any) -> dict:
    return sim.bill(engine, warehouse, load_settings(**settings), scenario)["invoices"]


def test_tiered_pricing_off_prices_all_overage_at_the_first_tier(
    engine: Engine, warehouse: Warehouse
) -> None:
    # 1,500 GB over the transfer quota, all at tier 1's 0.50 = 750.00 (not 625.00)
    may = _bill(engine, warehouse, BASE, feature_tiered_pricing=False)[1]
    assert may["lines"][2]["amount"] == "750.00"


def test_credits_off_applies_no_credit(engine: Engine, warehouse: Warehouse) -> None:
    scenario = _with("organizations.0.credits", [{"amount": "100.00"}])
    with_credits = _bill(engine, warehouse, scenario)
    # Apr 1: total 197 + 19.70 tax = 216.70, the 100.00 credit pays part of it
    assert (with_credits[0]["credits_applied"], with_credits[0]["amount_due"]) == (
        "100.00",
        "116.70",
    )
    without = _bill(engine, warehouse, scenario, feature_credits=False)
    assert [i["credits_applied"] for i in without] == ["0.00", "0.00"]
    assert Decimal(without[0]["amount_due"]) == Decimal("216.70")


def test_parse_rejects_a_change_without_plan_or_seats() -> None:
    catalog = sim.Catalog(
        plans=frozenset({"starter"}),
        metrics=frozenset({"transfer"}),
        currencies=frozenset({"USD"}),
        plans_selling_seats=frozenset({"starter"}),
        included_seats={"starter": 3},
    )
    scenario = _with("subscriptions.0.changes", [{"at": "2026-04-10T00:00:00Z"}])
    with pytest.raises(ScenarioError, match=r"changes\[0\]: a change needs a plan or seats"):
        parse_scenario(scenario, catalog)
