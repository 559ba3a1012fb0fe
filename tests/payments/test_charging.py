"""Charging open invoices through localstripe: outcomes, faults, and never twice."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.payments import PaymentError
from dagster_billing.payments.charging import charge_invoice, invoices_to_charge, start_attempt
from dagster_billing.payments.customers import add_payment_method, refuse_card_numbers
from dagster_billing.payments.gateway import GatewayDeclinedError
from dagster_billing.resources.stripe import StripeApi
from tests.payments.conftest import intents_for, invoice_status, outbox_types, payment_rows
from tests.payments.stripe_proxy import StripeProxy

NOW = datetime(2031, 1, 1, tzinfo=UTC)


def test_successful_charge_pays_the_invoice_once(
    engine: Engine, gateway, open_invoice, stripe_client
) -> None:
    invoice = open_invoice(gateway=gateway, amount="123.45")

    outcome = charge_invoice(engine, gateway, invoice.id, now=NOW)

    assert outcome.status == "succeeded"
    (row,) = payment_rows(engine, invoice.id)
    assert row["status"] == "succeeded"
    assert row["amount"] == Decimal("123.45")
    assert row["idempotency_key"].startswith(f"dmb-invoice-{invoice.id}-")
    assert row["idempotency_key"].endswith("-attempt-1")
    assert invoice_status(engine, invoice.id) == "paid"
    (intent,) = intents_for(stripe_client, invoice.id, engine)
    assert intent["amount"] == 12345 and intent["currency"] == "usd"
    assert intent["id"] == row["stripe_payment_intent_id"]
    with engine.connect() as conn:
        ledger = conn.execute(
            sa.text(
                "select entry_type, amount from dictamesh_billing_payment_ledger"
                " where invoice_id = :i"
            ),
            {"i": invoice.id},
        ).all()
    assert ledger == [("payment", Decimal("123.45"))]
    assert outbox_types(engine, [str(row["id"]), str(invoice.id)]) == [
        "billing.invoice.paid",
        "billing.payment.succeeded",
    ]
    # A second run finds nothing to charge, and charging again directly is a no-op.
    assert charge_invoice(engine, gateway, invoice.id, now=NOW).status == "skipped"
    assert len(intents_for(stripe_client, invoice.id, engine)) == 1


def test_jpy_is_charged_in_whole_yen(engine: Engine, gateway, open_invoice, stripe_client) -> None:
    invoice = open_invoice(gateway=gateway, amount="5000", currency="JPY")
    assert charge_invoice(engine, gateway, invoice.id, now=NOW).status == "succeeded"
    (intent,) = intents_for(stripe_client, invoice.id, engine)
    assert (intent["amount"], intent["currency"]) == (5000, "jpy")


def test_attaching_a_declined_card_is_refused(engine: Engine, gateway, billing) -> None:
    customer = billing.customer()
    with pytest.raises(GatewayDeclinedError) as caught:
        add_payment_method(
            engine,
            gateway,
            customer.organization_id,
            payment_method_id="pm_card_visa_chargeDeclined",
        )
    assert caught.value.code == "card_declined"
    with engine.connect() as conn:
        stored = conn.scalar(
            sa.text(
                "select count(*) from dictamesh_billing_payment_methods where organization_id = :o"
            ),
            {"o": customer.organization_id},
        )
    assert stored == 0


def test_declined_charge_records_the_code_and_schedules_a_retry(
    engine: Engine, gateway, open_invoice
) -> None:
    invoice = open_invoice("pm_card_chargeCustomerFail", gateway=gateway)

    outcome = charge_invoice(engine, gateway, invoice.id, now=NOW, retry_days=(1, 3, 5, 7))

    assert (outcome.status, outcome.failure_code) == ("failed", "card_declined")
    (row,) = payment_rows(engine, invoice.id)
    assert row["status"] == "failed" and row["failure_code"] == "card_declined"
    assert row["next_retry_at"] == NOW + timedelta(days=1)
    assert invoice_status(engine, invoice.id) == "open"
    assert outbox_types(engine, [str(row["id"])]) == ["billing.payment.failed"]


def test_insufficient_funds_keeps_the_decline_code(
    engine: Engine, gateway, open_invoice, proxy: StripeProxy
) -> None:
    invoice = open_invoice(gateway=gateway)
    proxy.fail_next("decline:insufficient_funds", "/v1/payment_intents")

    outcome = charge_invoice(engine, gateway, invoice.id, now=NOW)

    (row,) = payment_rows(engine, invoice.id)
    assert outcome.status == "failed"
    assert (row["failure_code"], row["decline_code"]) == ("card_declined", "insufficient_funds")
    assert row["next_retry_at"] == NOW + timedelta(days=1)


def test_hard_decline_makes_the_invoice_uncollectible_at_once(
    engine: Engine, gateway, open_invoice, proxy: StripeProxy
) -> None:
    invoice = open_invoice(gateway=gateway)
    proxy.fail_next("decline:stolen_card", "/v1/payment_intents")

    charge_invoice(engine, gateway, invoice.id, now=NOW)

    (row,) = payment_rows(engine, invoice.id)
    assert row["next_retry_at"] is None
    assert invoice_status(engine, invoice.id) == "uncollectible"


def test_authentication_required_waits_for_the_customer(
    engine: Engine, gateway, open_invoice, stripe_client
) -> None:
    card = stripe_client.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": "4000002500003155", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    invoice = open_invoice(card.id, gateway=gateway)

    outcome = charge_invoice(engine, gateway, invoice.id, now=NOW)

    assert outcome.status == "requires_action"
    (row,) = payment_rows(engine, invoice.id)
    assert row["failure_code"] == "authentication_required"
    assert row["next_reconcile_at"] == NOW + timedelta(minutes=5)
    # In flight: no second attempt while the customer may still authenticate.
    with engine.connect() as conn:
        assert invoice.id not in invoices_to_charge(conn, NOW + timedelta(days=30))
    assert charge_invoice(engine, gateway, invoice.id, now=NOW).status == "skipped"


def test_a_500_is_retried_by_the_sdk_with_the_same_key(
    engine: Engine, gateway, open_invoice, proxy: StripeProxy, stripe_client
) -> None:
    invoice = open_invoice(gateway=gateway)
    proxy.fail_next("500", "/v1/payment_intents")
    sent = gateway.requests_sent

    assert charge_invoice(engine, gateway, invoice.id, now=NOW).status == "succeeded"
    assert len(intents_for(stripe_client, invoice.id, engine)) == 1
    # The SDK's retry went through the rate limiter too: Stripe counts both requests.
    assert gateway.requests_sent == sent + 2


def test_a_timeout_after_stripe_processed_the_charge_does_not_charge_twice(
    engine: Engine, gateway, open_invoice, proxy: StripeProxy, stripe_client
) -> None:
    invoice = open_invoice(gateway=gateway)
    replayed = proxy.counts["replayed"]
    proxy.fail_next("timeout", "/v1/payment_intents")

    assert charge_invoice(engine, gateway, invoice.id, now=NOW).status == "succeeded"
    assert proxy.counts["replayed"] == replayed + 1
    assert len(intents_for(stripe_client, invoice.id, engine)) == 1
    assert invoice_status(engine, invoice.id) == "paid"


def test_a_429_is_backed_off_for_retry_after_with_the_same_key(
    engine: Engine, gateway, open_invoice, proxy: StripeProxy, sleeps, stripe_client
) -> None:
    invoice = open_invoice(gateway=gateway)
    proxy.fail_next("429", "/v1/payment_intents")
    proxy.fail_next("429", "/v1/payment_intents")

    assert charge_invoice(engine, gateway, invoice.id, now=NOW).status == "succeeded"
    assert sleeps.calls == [1.0, 1.0]
    assert len(intents_for(stripe_client, invoice.id, engine)) == 1


def test_card_numbers_are_refused_without_echoing_them() -> None:
    with pytest.raises(PaymentError) as caught:
        refuse_card_numbers({"payment_method_id": "pm_x", "note": {"card": "4242 4242 4242 4242"}})
    assert "note.card" in str(caught.value)
    assert "4242" not in str(caught.value)
    refuse_card_numbers({"payment_method_id": "pm_card_visa", "amount": "1234567890123"})


def test_the_proxy_answers_a_reused_key_with_other_parameters_400(
    proxy: StripeProxy, stripe_client
) -> None:
    api = StripeApi("sk_test_12345", api_base=proxy.url)
    options = {"idempotency_key": "test-proxy-key-1"}
    first = api.client.v1.customers.create({"name": "A"}, options)
    again = api.client.v1.customers.create({"name": "A"}, options)
    assert first.id == again.id
    import stripe

    with pytest.raises(stripe.IdempotencyError):
        api.client.v1.customers.create({"name": "B"}, options)


def test_two_runs_charging_one_invoice_at_once_charge_it_once(
    engine: Engine, gateway, open_invoice, stripe_client
) -> None:
    from concurrent.futures import ThreadPoolExecutor

    invoice = open_invoice(gateway=gateway)
    with ThreadPoolExecutor(max_workers=4) as pool:
        outcomes = list(
            pool.map(lambda _: charge_invoice(engine, gateway, invoice.id, now=NOW), range(4))
        )

    assert sorted(o.status for o in outcomes) == ["skipped", "skipped", "skipped", "succeeded"]
    assert len(intents_for(stripe_client, invoice.id, engine)) == 1
    assert [r["status"] for r in payment_rows(engine, invoice.id)] == ["succeeded"]


def test_a_charger_that_waited_for_the_invoice_lock_skips_the_attempt_started_meanwhile(
    engine: Engine, gateway, open_invoice
) -> None:
    """The second charger's read was taken before the first committed, so it names the same
    attempt number; the insert checks again under the lock and starts nothing."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    invoice = open_invoice(gateway=gateway)

    def second_charger() -> object:
        with engine.begin() as conn:
            return start_attempt(conn, invoice.id, now=NOW)

    with engine.connect() as first, ThreadPoolExecutor(max_workers=1) as pool:
        assert start_attempt(first, invoice.id, now=NOW) is not None
        waiting = pool.submit(second_charger)
        with engine.connect() as watch:
            for _ in range(200):
                blocked = watch.scalar(
                    sa.text(
                        "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
                        " and query like '%for update of i%'"
                    )
                )
                watch.rollback()  # pg_stat_activity is read once per transaction
                if blocked:
                    break
                time.sleep(0.05)
        assert blocked, "the second charger never waited for the invoice lock"
        first.commit()
        assert waiting.result() is None

    assert [(r["attempt"], r["status"]) for r in payment_rows(engine, invoice.id)] == [
        (1, "pending")
    ]
