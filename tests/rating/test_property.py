"""Property: `billing simulate` bills generated scenarios exactly as the oracle does.

The oracle (tests/rating/oracle.py) shares no code with the product. A dbt run costs
seconds, so each example carries many organizations and runs the models once.
"""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from sqlalchemy.engine import Engine

from dagster_billing.rating import simulate as sim
from dagster_billing.settings import load_settings
from dagster_billing.warehouse.database import Warehouse
from tests.rating.oracle import bill
from tests.rating.strategies import scenarios

LINE_FIELDS = ("kind", "metric", "quantity", "amount")
TOTALS = ("subtotal", "discount", "tax", "total", "credits_applied", "amount_due")


def comparable(result: dict[str, Any]) -> list[dict[str, Any]]:
    """What both sides must agree on; descriptions are for reading only (oracle A6)."""
    return [
        {
            "subscription": invoice["subscription"],
            "billing_date": invoice["billing_date"],
            "currency": invoice["currency"],
            "lines": [{k: line.get(k) for k in LINE_FIELDS} for line in invoice["lines"]],
            **{k: invoice[k] for k in TOTALS},
        }
        for invoice in result["invoices"]
    ]


@settings(max_examples=6, deadline=None, suppress_health_check=list(HealthCheck))
@given(scenarios(max_organizations=10))
def test_simulate_matches_the_oracle_to_the_cent(
    engine: Engine, warehouse: Warehouse, scenario: dict[str, Any]
) -> None:
    assert comparable(sim.bill(engine, warehouse, load_settings(), scenario)) == comparable(
        bill(scenario)
    )
