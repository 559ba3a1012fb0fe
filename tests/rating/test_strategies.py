"""Smoke test: generated scenarios are valid and the oracle bills them consistently.

The property test feeds these scenarios to the product, so a generator that strays into
the bad-scenario list (docs/scenario-format.md) would only produce noise there.
"""

from __future__ import annotations

import itertools
from decimal import Decimal
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings

from tests.rating.oracle import CURRENCIES, METRICS, PLANS, bill, parse_ts
from tests.rating.strategies import scenarios


def assert_valid(scenario: dict[str, Any]) -> None:
    """The bad-scenario list of docs/scenario-format.md, checked independently of the generator."""
    orgs = {org["id"]: org for org in scenario["organizations"]}
    assert all(org["currency"] in CURRENCIES for org in orgs.values())
    lives: dict[str, list[tuple[Any, Any]]] = {}
    for sub in scenario["subscriptions"]:
        assert sub["organization"] in orgs
        start = parse_ts(sub["start"])
        plan, seats = sub["plan"], sub["seats"]
        assert plan in PLANS and (plan != "free" or seats <= 1)
        for change in sub.get("changes", []):
            assert parse_ts(change["at"]) > start
            plan, seats = change.get("plan", plan), change.get("seats", seats)
            assert plan in PLANS and (plan != "free" or seats <= 1)
        end = parse_ts(sub["cancel_at"]) if "cancel_at" in sub else None
        lives.setdefault(sub["organization"], []).append((start, end))
    for spans in lives.values():
        spans.sort(key=lambda span: span[0])
        for (_, end), (next_start, _) in itertools.pairwise(spans):
            assert end is not None and end <= next_start, "overlapping subscriptions"
    seen = set()
    for row in scenario["usage"]:
        assert row["organization"] in orgs and row["metric"] in METRICS
        assert Decimal(row.get("quantity", row.get("per_hour"))) >= 0
        key = (row["organization"], row["metric"], row.get("hour", row.get("from")))
        assert key not in seen
        seen.add(key)


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_oracle_bills_generated_scenarios_consistently(scenario: dict[str, Any]) -> None:
    assert_valid(scenario)
    invoices = bill(scenario)["invoices"]
    as_of = parse_ts(scenario["as_of"])
    keys = [(i["subscription"], i["billing_date"]) for i in invoices]
    assert keys == sorted(keys)
    for invoice in invoices:
        assert parse_ts(invoice["billing_date"]) <= as_of
        subtotal = sum(Decimal(line["amount"]) for line in invoice["lines"])
        assert Decimal(invoice["subtotal"]) == subtotal
        total, due = Decimal(invoice["total"]), Decimal(invoice["amount_due"])
        assert total >= 0 and due >= 0
        assert total - Decimal(invoice["credits_applied"]) == due
        if subtotal > 0:
            taxable = subtotal - Decimal(invoice["discount"])
            assert taxable >= 0 and total == taxable + Decimal(invoice["tax"])
    # the product reads the scenario from YAML: the round trip must not change the bill
    assert bill(yaml.safe_load(yaml.safe_dump(scenario))) == bill(scenario)
