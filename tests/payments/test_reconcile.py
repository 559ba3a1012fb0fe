"""Unknown outcomes converge to Stripe: a charging process killed after the Stripe call,
a timeout with nothing sent, and the sensor that drives it (cursor, run keys)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.payments.charging import charge_invoice, invoices_to_charge
from dagster_billing.payments.reconcile import ACTION_DEADLINE, reconcile_due, reconcile_payment
from dagster_billing.resources import InvoicingResource, WarehouseResource
from dagster_billing.resources.stripe import StripeResource
from dagster_billing.sensors.payments import stripe_reconciliation_sensor
from dagster_billing.settings import load_settings
from dagster_billing.warehouse.database import Warehouse
from tests.conftest import STRIPE_TEST_API_KEY
from tests.payments.conftest import intents_for, invoice_status, payment_rows
from tests.payments.stripe_proxy import StripeProxy

NOW = datetime(2031, 2, 1, tzinfo=UTC)

# Runs the product's charge_invoice with a gateway that dies (SIGKILL) right after
# Stripe answered and before anything is recorded.
_CRASHING_CHARGE = textwrap.dedent(
    """
    import os, signal, sys
    from datetime import datetime
    import sqlalchemy as sa
    from dagster_billing.payments.charging import charge_invoice
    from dagster_billing.resources.stripe import StripeApi

    url, api_base, invoice_id, now = sys.argv[1:5]

    class DiesAfterTheCall(StripeApi):
        def create_payment_intent(self, **kwargs):
            super().create_payment_intent(**kwargs)
            os.kill(os.getpid(), signal.SIGKILL)

    engine = sa.create_engine(url)
    gateway = DiesAfterTheCall("sk_test_12345", api_base=api_base, timeout_seconds=5)
    charge_invoice(engine, gateway, int(invoice_id), now=datetime.fromisoformat(now))
    """
)


def test_a_charge_killed_between_stripe_and_the_record_is_resolved_by_reconciliation(
    engine: Engine, warehouse: Warehouse, gateway, open_invoice, proxy: StripeProxy, stripe_client
) -> None:
    invoice = open_invoice(gateway=gateway)
    url = warehouse.url.render_as_string(hide_password=False)
    done = subprocess.run(
        [sys.executable, "-c", _CRASHING_CHARGE, url, proxy.url, str(invoice.id), NOW.isoformat()],
        capture_output=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    (row,) = payment_rows(engine, invoice.id)
    assert row["status"] == "pending" and row["stripe_payment_intent_id"] is None
    assert len(intents_for(stripe_client, invoice.id, engine)) == 1
    # While the attempt is unresolved nothing charges the invoice again.
    assert charge_invoice(engine, gateway, invoice.id, now=NOW).status == "skipped"

    result = reconcile_due(engine, gateway, now=NOW + timedelta(minutes=3), retry_days=(1,))

    assert result.resolved >= 1
    (row,) = payment_rows(engine, invoice.id)
    (intent,) = intents_for(stripe_client, invoice.id, engine)
    assert row["status"] == "succeeded" and row["stripe_payment_intent_id"] == intent["id"]
    assert invoice_status(engine, invoice.id) == "paid"
    with engine.connect() as conn:
        assert invoice.id not in invoices_to_charge(conn, NOW + timedelta(days=30))


def test_a_request_that_never_reached_stripe_is_canceled_and_charged_anew(
    engine: Engine, gateway, open_invoice, proxy: StripeProxy, stripe_client
) -> None:
    invoice = open_invoice(gateway=gateway)
    for _ in range(3):  # the first try and both SDK retries
        proxy.fail_next("500", "/v1/payment_intents")

    assert charge_invoice(engine, gateway, invoice.id, now=NOW).status == "unknown"
    assert intents_for(stripe_client, invoice.id, engine) == []

    reconcile_due(engine, gateway, now=NOW + timedelta(minutes=5), retry_days=(1,))
    (row,) = payment_rows(engine, invoice.id)
    assert (row["status"], row["failure_code"]) == ("canceled", "not_sent")

    assert charge_invoice(engine, gateway, invoice.id, now=NOW).status == "succeeded"
    assert [r["status"] for r in payment_rows(engine, invoice.id)] == ["canceled", "succeeded"]
    assert len(intents_for(stripe_client, invoice.id, engine)) == 1


def test_reconciliation_backs_off_while_stripe_is_unreachable(
    engine: Engine, gateway, open_invoice, proxy: StripeProxy
) -> None:
    invoice = open_invoice(gateway=gateway)
    for _ in range(3):
        proxy.fail_next("500", "/v1/payment_intents")
    charge_invoice(engine, gateway, invoice.id, now=NOW)
    unreachable = StripeResource(
        api_key=STRIPE_TEST_API_KEY, api_base="http://127.0.0.1:9", enabled=True
    )
    later = NOW + timedelta(minutes=5)

    reconcile_due(engine, unreachable.gateway(), now=later, retry_days=(1,))

    (row,) = payment_rows(engine, invoice.id)
    assert row["status"] == "unknown"
    assert (row["reconcile_attempts"], row["next_reconcile_at"]) == (
        1,
        later + timedelta(minutes=5),
    )


def test_the_sensor_advances_its_cursor_and_never_repeats_a_run_key(
    engine: Engine, warehouse: Warehouse, gateway, open_invoice, proxy: StripeProxy, tmp_path
) -> None:
    invoice = open_invoice("pm_card_chargeCustomerFail", gateway=gateway)
    charge_invoice(engine, gateway, invoice.id, now=datetime.now(UTC) - timedelta(days=2))
    resources = {
        "warehouse": WarehouseResource(
            dsn=warehouse.url.render_as_string(hide_password=False), data_dir="unused"
        ),
        "stripe": StripeResource(
            api_key=STRIPE_TEST_API_KEY, api_base=proxy.url, enabled=True, auto_payment=True
        ),
        "invoicing": InvoicingResource.from_settings(load_settings(billing_data_dir=tmp_path)),
    }
    first_cursor = json.dumps(
        {"requested": None, "checked_at": (datetime.now(UTC) - timedelta(minutes=1)).isoformat()}
    )

    with dg.build_sensor_context(cursor=first_cursor, resources=resources) as context:
        first = stripe_reconciliation_sensor(context)
    assert isinstance(first, dg.SensorResult)
    assert [r.partition_key for r in first.run_requests or []] == [
        (datetime.now(UTC) - timedelta(days=1)).strftime("%Y-%m-%d")
    ]
    assert json.loads(first.cursor)["checked_at"] > json.loads(first_cursor)["checked_at"]

    with dg.build_sensor_context(cursor=first.cursor, resources=resources) as context:
        second = stripe_reconciliation_sensor(context)
    assert isinstance(second, dg.SensorResult)
    assert second.run_requests == []  # the same due set is not requested twice
    assert json.loads(second.cursor)["checked_at"] > json.loads(first.cursor)["checked_at"]
    # The requested run charges attempt 2 (it fails again; retry 2 is days away).
    assert charge_invoice(engine, gateway, invoice.id, now=datetime.now(UTC)).status == "failed"
    with dg.build_sensor_context(cursor=second.cursor, resources=resources) as context:
        third = stripe_reconciliation_sensor(context)
    assert isinstance(third, dg.SensorResult) and third.run_requests == []
    keys = [r.run_key for r in (first.run_requests or [])]
    assert len(keys) == 1 and keys[0].startswith("payments:")


def test_the_sensor_skips_with_stripe_disabled(warehouse: Warehouse) -> None:
    resources = {
        "warehouse": WarehouseResource(
            dsn=warehouse.url.render_as_string(hide_password=False), data_dir="unused"
        ),
        "stripe": StripeResource(enabled=False),
        "invoicing": InvoicingResource.from_settings(load_settings()),
    }
    with dg.build_sensor_context(resources=resources) as context:
        result = stripe_reconciliation_sensor(context)
    assert isinstance(result, dg.SkipReason)


def test_a_payment_stripe_has_and_we_lost_is_recorded_not_charged_again(
    engine: Engine, gateway, open_invoice, stripe_client
) -> None:
    from dagster_billing.payments.charging import start_attempt
    from dagster_billing.payments.reconcile import resolve_intent

    invoice = open_invoice(gateway=gateway)
    with engine.begin() as conn:
        payment_id, request = start_attempt(conn, invoice.id, now=NOW)  # type: ignore[misc]
    intent = gateway.create_payment_intent(**request)
    with engine.begin() as conn:  # the attempt row is lost
        conn.execute(
            sa.text("delete from dictamesh_billing_payments where id = :p"), {"p": payment_id}
        )
    foreign = dict(request, idempotency_key="dmb-invoice-1-999-attempt-1")
    foreign["metadata"] = {
        **request["metadata"],
        "dmb_idempotency_key": "dmb-invoice-1-999-attempt-1",
    }
    other = gateway.create_payment_intent(**foreign)  # another warehouse's invoice, same id

    assert resolve_intent(engine, gateway, other.id, now=NOW, retry_days=(1,)) is None
    assert resolve_intent(engine, gateway, intent.id, now=NOW, retry_days=(1,)) == "succeeded"

    (row,) = payment_rows(engine, invoice.id)
    assert (row["stripe_payment_intent_id"], row["status"]) == (intent.id, "succeeded")
    assert invoice_status(engine, invoice.id) == "paid"
    assert charge_invoice(engine, gateway, invoice.id, now=NOW).status == "skipped"


def test_a_refund_without_an_answer_is_completed_once_by_reconciliation(
    engine: Engine, gateway, open_invoice, proxy: StripeProxy, stripe_client
) -> None:
    """Stripe processed the refund but every answer was lost (a held connection, then two
    500s for the SDK's retries): the credit note stays pending, then is completed from
    the refund Stripe has, without a second refund."""
    import pytest

    from dagster_billing.payments import PaymentError
    from dagster_billing.payments.refunds import (
        get_credit_note,
        refund_invoice,
        resume_pending_refunds,
    )

    invoice = open_invoice(gateway=gateway)
    charge_invoice(engine, gateway, invoice.id, now=NOW)
    proxy.fail_next("timeout", "/v1/refunds")
    proxy.fail_next("500", "/v1/refunds")
    proxy.fail_next("500", "/v1/refunds")
    with pytest.raises(PaymentError, match="stays pending"):
        refund_invoice(engine, gateway, invoice.number, amount="10", reason="x", actor="t", at=NOW)
    with engine.connect() as conn:
        number = conn.scalar(
            sa.text("select number from dictamesh_billing_credit_notes where invoice_id = :i"),
            {"i": invoice.id},
        )
        assert get_credit_note(conn, number).status == "pending"

    assert resume_pending_refunds(engine, gateway, now=NOW + timedelta(minutes=3)) == 1

    with engine.connect() as conn:
        note = get_credit_note(conn, number)
    (row,) = payment_rows(engine, invoice.id)
    refunds = stripe_client.v1.refunds.list(
        {"payment_intent": row["stripe_payment_intent_id"], "limit": 100}
    ).data
    assert [r.amount for r in refunds] == [1000]
    assert (note.status, note.stripe_refund_id) == ("succeeded", refunds[0].id)
    assert row["amount_refunded"] == 10


def test_a_charge_nobody_authenticates_is_abandoned_after_the_deadline_and_dunned(
    engine: Engine, gateway, open_invoice, stripe_client
) -> None:
    card = stripe_client.v1.payment_methods.create(
        {
            "type": "card",
            "card": {"number": "4000002500003155", "exp_month": 12, "exp_year": 2030, "cvc": "123"},
        }
    )
    invoice = open_invoice(card.id, gateway=gateway)
    started = NOW  # the attempt's created_at, from which the deadline runs
    assert charge_invoice(engine, gateway, invoice.id, now=started).status == "requires_action"
    (row,) = payment_rows(engine, invoice.id)

    early = reconcile_payment(
        engine, gateway, row["id"], now=started + timedelta(hours=1), retry_days=(1,)
    )
    assert early == "requires_action"

    late = started + ACTION_DEADLINE + timedelta(minutes=1)
    assert reconcile_payment(engine, gateway, row["id"], now=late, retry_days=(1,)) == "failed"

    (row,) = payment_rows(engine, invoice.id)
    assert (row["status"], row["failure_code"]) == ("failed", "authentication_required")
    assert "within 72 h" in str(row["failure_message"])
    (intent,) = intents_for(stripe_client, invoice.id, engine)
    assert intent["status"] == "canceled"
    assert invoice_status(engine, invoice.id) == "open"
    with engine.connect() as conn:
        failed = conn.scalar(
            sa.text(
                "select count(*) from dictamesh_billing_outbox where event_type ="
                " 'billing.payment.failed' and payload->>'payment_id' = :p"
            ),
            {"p": str(row["id"])},
        )
        assert failed == 1
        # dunning counts retry days from the first failed attempt, three days back: the
        # retry on day 1 is due at once
        assert invoice.id in invoices_to_charge(conn, late)
    assert row["next_retry_at"] == row["created_at"] + timedelta(days=1)
    # a second pass changes nothing
    assert reconcile_payment(engine, gateway, row["id"], now=late, retry_days=(1,)) == "failed"
