"""What each endpoint answers, over the served app and a real warehouse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.warehouse.partitions import ensure_partitions_for
from tests.api.conftest import Tenants, client, finalize_invoices


@pytest.fixture(scope="module")
def invoiced(engine: Engine, tenants: Tenants) -> None:
    finalize_invoices(engine, months=3)


def test_invoices_page_newest_first_with_a_cursor(
    api: str, tenants: Tenants, invoiced: None
) -> None:
    with client(api, tenants.keys["finance"]) as http:
        first = http.get("/invoices", params={"limit": 4}).json()
        second = http.get(
            "/invoices", params={"limit": 4, "starting_after": first["data"][-1]["id"]}
        ).json()
        only_b = http.get("/invoices", params={"organization": "org-b", "status": "open"}).json()
        none_paid = http.get("/invoices", params={"status": "paid"}).json()
    ids = [i["id"] for i in first["data"] + second["data"]]
    assert len(ids) == 6 and ids == sorted(ids, reverse=True)
    assert (first["has_more"], second["has_more"]) == (True, False)
    assert {i["organization"] for i in only_b["data"]} == {"org-b"} and len(only_b["data"]) == 3
    assert none_paid == {"data": [], "has_more": False}


def test_invoices_filter_by_issue_date(api: str, tenants: Tenants, invoiced: None) -> None:
    with client(api, tenants.keys["admin"]) as http:
        everything = http.get("/invoices", params={"limit": 100}).json()["data"]
        issued = sorted(i["issued_at"] for i in everything)
        later = http.get("/invoices", params={"issued_from": issued[-1], "limit": 100}).json()[
            "data"
        ]
        naive = http.get("/invoices", params={"issued_from": "2026-11-01T00:00:00"})
    assert later and all(i["issued_at"] >= issued[-1] for i in later)
    assert naive.status_code == 422 and naive.json()["errors"][0]["field"] == "issued_from"


def test_an_invoice_with_its_lines_and_its_pdf(api: str, tenants: Tenants, invoiced: None) -> None:
    with client(api, tenants.keys["org_member_a"]) as http:
        newest = http.get("/invoices", params={"limit": 1}).json()["data"][0]
        invoice = http.get(f"/invoices/{newest['id']}").json()
        pdf = http.get(f"/invoices/{newest['id']}/pdf")
    assert invoice["number"].startswith("INV-2026-")
    assert (invoice["subtotal"], invoice["tax"], invoice["total"]) == (
        "99.000000",
        "9.900000",
        "108.900000",
    )
    assert [(line["kind"], line["amount"]) for line in invoice["lines"]] == [
        ("subscription_fee", "99.000000")
    ]
    assert pdf.status_code == 200 and pdf.headers["content-type"] == "application/pdf"
    assert pdf.content.startswith(b"%PDF")


def test_void_as_finance_returns_the_void_invoice(
    api: str, tenants: Tenants, invoiced: None
) -> None:
    with client(api, tenants.keys["finance"]) as http:
        target = http.get("/invoices", params={"organization": "org-b", "limit": 1}).json()
        voided = http.post(
            f"/invoices/{target['data'][0]['id']}/void", json={"reason": "issued in error"}
        )
        again = http.post(
            f"/invoices/{target['data'][0]['id']}/void", json={"reason": "issued in error"}
        )
    assert voided.status_code == 200 and voided.json()["status"] == "void"
    assert again.status_code == 409


def test_paying_without_stripe_answers_503_naming_the_setting(
    api: str, tenants: Tenants, invoiced: None
) -> None:
    with client(api, tenants.keys["org_member_a"]) as http:
        invoice = http.get("/invoices", params={"limit": 1}).json()["data"][0]
        response = http.post("/payments", json={"invoice": invoice["id"]})
    assert response.status_code == 503
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"].startswith("STRIPE_ENABLED:")


def test_subscription_lifecycle_through_the_api(api: str, tenants: Tenants) -> None:
    with client(api, tenants.keys["admin"]) as http:
        org = http.post(
            "/organizations",
            json={"external_id": "life", "name": "Life", "currency": "GBP", "tax_rate": "0.2"},
        )
        created = http.post(
            "/subscriptions",
            json={
                "organization": "life",
                "plan": "free",
                "external_id": "sub-life",
                "start": "2026-01-31T00:00:00Z",
            },
        )
    with client(api, tenants.keys["admin"]) as http:
        upgraded = http.post(
            "/subscriptions/sub-life/change",
            json={"plan": "starter", "seats": 4, "effective_at": "2026-02-10T00:00:00Z"},
        )
        ending = http.post("/subscriptions/sub-life/cancel", json={"at_period_end": True})
        fetched = http.get("/subscriptions/sub-life").json()
        renamed = http.put("/organizations/life", json={"name": "Life plc"}).json()
    assert org.status_code == 201 and org.json()["tax_rate"] == "0.200000"
    assert created.status_code == 201 and created.json()["plan"] == "free"
    assert upgraded.json()["plan"] == "starter" and upgraded.json()["seats"] == 4
    assert upgraded.json()["changes"][0]["reason"] == "upgrade"
    period_end = datetime.fromisoformat(fetched["current_period_end"])
    assert ending.status_code == 200
    assert datetime.fromisoformat(ending.json()["cancel_at"]) == period_end
    assert fetched["status"] == "active" and fetched["initial_plan"] == "free"
    assert renamed["name"] == "Life plc"


def test_entitlements_and_their_check(api: str, tenants: Tenants) -> None:
    with client(api, tenants.keys["service_a"]) as http:
        limits = http.get("/organizations/org-a/entitlements").json()
        fits = http.get("/organizations/org-a/entitlements/adapters", params={"quantity": 5})
        over = http.get("/organizations/org-a/entitlements/adapters", params={"quantity": 6})
    assert limits == {"organization": "org-a", "plan": "starter", "limits": limits["limits"]}
    assert limits["limits"]["adapters"] == "5"
    assert fits.status_code == 200 and fits.json()["allowed"] == "5"
    assert over.status_code == 403 and over.json()["limit"] == "adapters"
    assert over.json()["detail"] == "adapters: 6 exceeds the plan's limit of 5"


def test_credit_balance(api: str, tenants: Tenants) -> None:
    with client(api, tenants.keys["admin"]) as http:
        http.post("/organizations/org-a/credits", json={"amount": "12.50"})
        http.post(
            "/organizations/org-a/credits",
            json={"amount": "3", "expires_at": "2026-01-01T00:00:00Z"},
        )
    with client(api, tenants.keys["org_member_a"]) as http:
        balance = http.get("/organizations/org-a/credit-balance").json()
    assert balance == {"organization": "org-a", "currency": "USD", "balance": "12.500000"}


def test_usage_current_and_history(api: str, engine: Engine, tenants: Tenants) -> None:
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    hours = [now - timedelta(hours=3), now - timedelta(hours=2)]
    with engine.begin() as conn:
        ensure_partitions_for(conn, hours[0], now + timedelta(hours=1))
        for hour in hours:
            conn.execute(
                sa.text(
                    "insert into dictamesh_billing_usage_metrics (organization_id, metric,"
                    " hour_start, quantity, source) select id, 'api_calls', :h, 250000, 'api'"
                    " from dictamesh_billing_organizations where external_id = 'org-a'"
                ),
                {"h": hour},
            )
    with client(api, tenants.keys["service_a"]) as http:
        current = http.get("/usage/current").json()
        history = http.get(
            "/usage/history",
            params={
                "granularity": "hourly",
                "start": hours[0].isoformat(),
                "end": now.isoformat(),
            },
        ).json()
        too_long = http.get(
            "/usage/history",
            params={"start": "2026-01-01T00:00:00Z", "end": "2027-06-01T00:00:00Z"},
        )
    calls = next(m for m in current["metrics"] if m["metric"] == "api_calls")
    # starter: 1,000,000 calls included (in units of 1,000 calls: the catalog counts calls)
    assert calls["used"] == "500000.000000" and calls["quota"] == "1000000.000000"
    assert calls["percent_used"] == "50.00"
    assert [(p["metric"], p["quantity"]) for p in history["data"]] == [
        ("api_calls", "250000.000000"),
        ("api_calls", "250000.000000"),
    ]
    assert too_long.status_code == 422 and too_long.json()["errors"][0]["field"] == "end"


def test_upcoming_invoice_is_the_next_draft(api: str, engine: Engine, tenants: Tenants) -> None:
    """A draft the marts hold that is not finalized yet (rating writes it; stood in here)."""
    with engine.begin() as conn:
        conn.execute(sa.text("create schema if not exists analytics"))
        exists = conn.scalar(sa.text("select to_regclass('analytics.fct_invoices')"))
        if exists is None:
            from dagster_billing.invoicing.marts import CONTRACT_DDL

            conn.execute(sa.text(CONTRACT_DDL))
        conn.execute(
            sa.text(
                "insert into analytics.fct_invoices select 'sub-a/next', s.id, 'sub-a', o.id,"
                " 'org-a', '2027-03-01', '2027-03-01', '2027-04-01', 9, 'USD', 99, 0, 0.1,"
                " 9.9, 108.9, 0, 108.9, 0 from dictamesh_billing_subscriptions s join"
                " dictamesh_billing_organizations o on o.id = s.organization_id"
                " where s.external_id = 'sub-a'"
            )
        )
    with client(api, tenants.keys["org_member_a"]) as http:
        upcoming = http.get("/subscriptions/sub-a/upcoming-invoice")
    assert upcoming.status_code == 200, upcoming.text
    assert (upcoming.json()["total"], upcoming.json()["billing_date"]) == (
        "108.9",
        "2027-03-01T00:00:00Z",
    )
