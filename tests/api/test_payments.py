"""Payments through the API: the served app, a real warehouse and real localstripe.

Org A pays with pm_card_visa, org B's card attaches but every charge is declined
(pm_card_chargeCustomerFail). Tests run in file order and share the module's state.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.settings import load_settings
from tests.api.conftest import Tenants, client, finalize_invoices, serve
from tests.conftest import STRIPE_TEST_API_KEY
from tests.payments.conftest import intents_for

CARD = "4242424242424242"


@pytest.fixture(scope="module")
def open_invoices(engine: Engine, tenants: Tenants) -> dict[str, int]:
    """Each tenant's oldest open invoice (108.90 USD)."""
    finalize_invoices(engine, months=2)
    with engine.connect() as conn:
        return dict(
            conn.execute(
                sa.text(
                    "select o.external_id, min(i.id) from dictamesh_billing_invoices i"
                    " join dictamesh_billing_organizations o on o.id = i.organization_id"
                    " where i.status = 'open' group by o.external_id"
                )
            ).all()
        )


@pytest.fixture(scope="module")
def stripe_api(
    engine: Engine, tenants: Tenants, stripe_server: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    """The app with Stripe enabled, pointed at localstripe."""
    settings = load_settings(
        api_rate_limit="10000/second",
        stripe_enabled=True,
        stripe_api_key=STRIPE_TEST_API_KEY,
        stripe_api_base=stripe_server,
        billing_data_dir=tmp_path_factory.mktemp("billing-data"),
    )
    served = serve(settings, engine)
    yield served.url
    served.stop()


def test_pay_an_open_invoice(
    stripe_api: str, tenants: Tenants, open_invoices: dict[str, int], engine: Engine, stripe_client
) -> None:
    invoice_id = open_invoices["org-a"]
    with client(stripe_api, tenants.keys["org_member_a"]) as http:
        method = http.post(
            "/payment-methods",
            json={"organization": "org-a", "stripe_payment_method_id": "pm_card_visa"},
        )
        paid = http.post("/payments", json={"invoice": invoice_id})
        again = http.post("/payments", json={"invoice": invoice_id})
        invoice = http.get(f"/invoices/{invoice_id}").json()
        fetched = http.get(f"/payments/{paid.json()['id']}")
    assert method.status_code == 201, method.text
    assert (method.json()["last4"], method.json()["is_default"]) == ("4242", True)
    assert paid.status_code == 201, paid.text
    payment = paid.json()
    assert (payment["status"], payment["invoice"], payment["amount"]) == (
        "succeeded",
        invoice_id,
        "108.900000",
    )
    assert payment["stripe_payment_intent_id"].startswith("pi_")
    assert invoice["status"] == "paid"
    assert again.status_code == 409 and again.json()["errors"][0]["field"] == "invoice"
    assert fetched.status_code == 200 and fetched.json() == payment
    intents = intents_for(stripe_client, invoice_id, engine)
    assert [(pi["status"], pi["amount"]) for pi in intents] == [("succeeded", 10890)]
    with client(stripe_api, tenants.keys["org_member_b"]) as http:
        assert http.get(f"/payments/{payment['id']}").status_code == 404


def test_a_declined_card_answers_402_with_the_failure_code(
    stripe_api: str, tenants: Tenants, open_invoices: dict[str, int]
) -> None:
    invoice_id = open_invoices["org-b"]
    with client(stripe_api, tenants.keys["admin"]) as http:
        method = http.post(
            "/payment-methods",
            json={
                "organization": "org-b",
                "stripe_payment_method_id": "pm_card_chargeCustomerFail",
            },
        )
        declined = http.post("/payments", json={"invoice": invoice_id})
        problem = declined.json()
        payment = http.get(f"/payments/{problem['payment']}").json()
        invoice = http.get(f"/invoices/{invoice_id}").json()
    assert method.status_code == 201, method.text
    assert declined.status_code == 402, declined.text
    assert declined.headers["content-type"] == "application/problem+json"
    assert problem["failure_code"] == "card_declined"
    assert (payment["status"], payment["failure_code"]) == ("failed", "card_declined")
    assert payment["next_retry_at"] is not None  # dunning scheduled the retry
    assert invoice["status"] == "open"


def test_refund_part_of_a_payment_issues_a_credit_note(
    stripe_api: str, tenants: Tenants, open_invoices: dict[str, int], engine: Engine
) -> None:
    with engine.connect() as conn:
        payment_id = conn.scalar(
            sa.text(
                "select id from dictamesh_billing_payments where invoice_id = :i"
                " and status = 'succeeded'"
            ),
            {"i": open_invoices["org-a"]},
        )
    with client(stripe_api, tenants.keys["finance"]) as http:
        refunded = http.post(
            f"/payments/{payment_id}/refund", json={"amount": "10.00", "reason": "goodwill"}
        )
        too_much = http.post(
            f"/payments/{payment_id}/refund", json={"amount": "200", "reason": "too much"}
        )
        payment = http.get(f"/payments/{payment_id}").json()
    assert refunded.status_code == 201, refunded.text
    note = refunded.json()
    assert note["number"].startswith("CN-") and note["status"] == "succeeded"
    assert (note["amount"], note["payment"]) == ("10.000000", payment_id)
    assert note["reason"] == "goodwill"
    assert note["stripe_refund_id"].startswith("re_")
    assert too_much.status_code == 422 and too_much.json()["errors"][0]["field"] == "amount"
    assert (payment["status"], payment["amount_refunded"]) == ("succeeded", "10.000000")
    with engine.connect() as conn:
        actor = conn.scalar(
            sa.text(
                "select actor from dictamesh_billing_audit_log"
                " where action = 'invoice.refunded' order by id desc limit 1"
            )
        )
        pdf = conn.scalar(
            sa.text("select pdf_path from dictamesh_billing_credit_notes where number = :n"),
            {"n": note["number"]},
        )
    assert actor.startswith("api-key:")
    assert pdf and Path(pdf).read_bytes().startswith(b"%PDF")


@pytest.mark.parametrize(
    "body",
    [
        {"organization": "org-a", "stripe_payment_method_id": "pm_card_visa", "card": CARD},
        {"organization": "org-a", "stripe_payment_method_id": f"pm_{CARD}"},
        {"organization": "org-a", "stripe_payment_method_id": "pm_x", "n": "4242 4242 4242 4242"},
    ],
    ids=["extra field", "in the id", "spaced"],
)
def test_a_card_number_is_refused_without_repeating_it(
    stripe_api: str,
    tenants: Tenants,
    engine: Engine,
    body: dict[str, str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    with engine.connect() as conn:
        before = conn.scalar(sa.text("select count(*) from dictamesh_billing_payment_methods"))
    with caplog.at_level(logging.DEBUG), client(stripe_api, tenants.keys["org_member_a"]) as http:
        response = http.post("/payment-methods", json=body)
    assert response.status_code == 422, response.text
    assert "card number" in response.json()["detail"]
    assert response.json()["errors"][0]["field"] in body
    assert "4242" not in response.text and "4242" not in caplog.text
    with engine.connect() as conn:
        after = conn.scalar(sa.text("select count(*) from dictamesh_billing_payment_methods"))
    assert after == before


def test_an_unknown_payment_method_names_the_field(stripe_api: str, tenants: Tenants) -> None:
    with client(stripe_api, tenants.keys["org_member_a"]) as http:
        response = http.post(
            "/payment-methods",
            json={"organization": "org-a", "stripe_payment_method_id": "pm_doesnotexist"},
        )
    assert response.status_code == 422, response.text
    assert response.json()["errors"][0]["field"] == "stripe_payment_method_id"


def test_without_stripe_payments_answer_503_naming_the_setting(
    engine: Engine, tenants: Tenants, open_invoices: dict[str, int]
) -> None:
    served = serve(load_settings(api_rate_limit="10000/second", stripe_enabled=False), engine)
    try:
        with client(served.url, tenants.keys["admin"]) as http:
            pay = http.post("/payments", json={"invoice": open_invoices["org-b"]})
            method = http.post(
                "/payment-methods",
                json={"organization": "org-a", "stripe_payment_method_id": "pm_card_visa"},
            )
    finally:
        served.stop()
    for response in (pay, method):
        assert response.status_code == 503, response.text
        assert "STRIPE_ENABLED" in response.json()["detail"]


def test_a_card_declined_on_attach_answers_402(stripe_api: str, tenants: Tenants) -> None:
    with client(stripe_api, tenants.keys["org_member_a"]) as http:
        response = http.post(
            "/payment-methods",
            json={
                "organization": "org-a",
                "stripe_payment_method_id": "pm_card_visa_chargeDeclined",
            },
        )
    assert response.status_code == 402, response.text
    assert response.json()["failure_code"] == "card_declined"
    assert response.json()["errors"][0]["field"] == "stripe_payment_method_id"
