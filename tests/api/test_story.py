"""A subscription created, upgraded mid-period and cancelled through the API is billed by
the dbt models exactly as the same story written as a `billing simulate` scenario."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.rating.simulate import bill, collect_invoices, run_invoice_models
from dagster_billing.settings import load_settings
from dagster_billing.warehouse.database import Warehouse
from dagster_billing.warehouse.partitions import ensure_partitions_for
from tests.api.conftest import Tenants, client

AS_OF = datetime(2026, 7, 1, tzinfo=UTC)
USAGE_FROM = datetime(2026, 4, 1, tzinfo=UTC)
USAGE_TO = datetime(2026, 5, 20, tzinfo=UTC)
PER_HOUR = Decimal("1500")

SCENARIO = {
    "as_of": "2026-07-01T00:00:00Z",
    "organizations": [
        {
            "id": "story",
            "name": "Story Ltd",
            "currency": "EUR",
            "tax_rate": "0.19",
            "credits": [{"amount": "25.00"}],
            "promotions": [{"percent_off": "10", "duration_periods": 1}],
        }
    ],
    "subscriptions": [
        {
            "id": "sub-story",
            "organization": "story",
            "plan": "starter",
            "cycle": "monthly",
            "seats": 5,
            "start": "2026-04-01T00:00:00Z",
            "changes": [{"at": "2026-04-16T00:00:00Z", "plan": "professional", "seats": 12}],
            "cancel_at": "2026-05-20T00:00:00Z",
        }
    ],
    "usage": [
        {
            "organization": "story",
            "metric": "api_calls",
            "from": "2026-04-01T00:00:00Z",
            "to": "2026-05-20T00:00:00Z",
            "per_hour": str(PER_HOUR),
        }
    ],
}


def test_the_api_story_bills_exactly_like_its_scenario(
    api: str, engine: Engine, warehouse: Warehouse, tenants: Tenants
) -> None:
    with client(api, tenants.keys["admin"]) as http:
        steps = [
            http.post(
                "/organizations",
                json={
                    "external_id": "story",
                    "name": "Story Ltd",
                    "currency": "EUR",
                    "tax_rate": "0.19",
                },
            ),
            http.post("/organizations/story/credits", json={"amount": "25.00"}),
            http.post(
                "/organizations/story/promotions",
                json={"code": "promotion-1", "percent_off": "10", "duration_periods": 1},
            ),
            http.post(
                "/subscriptions",
                json={
                    "organization": "story",
                    "external_id": "sub-story",
                    "plan": "starter",
                    "seats": 5,
                    "start": "2026-04-01T00:00:00Z",
                },
            ),
            http.post(
                "/subscriptions/sub-story/change",
                json={"plan": "professional", "seats": 12, "effective_at": "2026-04-16T00:00:00Z"},
            ),
            http.post("/subscriptions/sub-story/cancel", json={"at": "2026-05-20T00:00:00Z"}),
        ]
    assert [s.status_code for s in steps] == [201, 201, 201, 201, 200, 200], [s.text for s in steps]
    assert steps[-1].json()["status"] == "canceled"
    # usage has its own write path (metering, import); the hours go straight in here
    with engine.begin() as conn:
        ensure_partitions_for(conn, USAGE_FROM, USAGE_TO)
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_usage_metrics (organization_id, metric,"
                " hour_start, quantity, source) select o.id, 'api_calls', h, :q, 'api'"
                " from dictamesh_billing_organizations o, generate_series(cast(:a as timestamptz),"
                " cast(:b as timestamptz), interval '1 hour') h where o.external_id = 'story'"
            ),
            {"q": PER_HOUR, "a": USAGE_FROM, "b": USAGE_TO - timedelta(hours=1)},
        )
    settings = load_settings()
    run_invoice_models(warehouse, "public", settings, AS_OF)
    with engine.connect() as conn:
        through_api = [
            i for i in collect_invoices(conn, "public") if i["subscription"] == "sub-story"
        ]
    simulated = bill(engine, warehouse, settings, SCENARIO)["invoices"]
    assert len(through_api) == 3  # Apr 1 (advance), May 1, May 20 (cancellation)
    assert through_api == simulated
