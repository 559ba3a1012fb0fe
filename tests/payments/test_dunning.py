"""Dunning with a frozen clock: PAYMENT_RETRY_SCHEDULE days after the first failure,
then uncollectible; a new card in between ends it paid."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.payments.charging import charge_invoice, invoices_to_charge
from dagster_billing.payments.customers import add_payment_method
from dagster_billing.settings import load_settings
from tests.payments.conftest import invoice_status, outbox_types, payment_rows

T0 = datetime(2031, 3, 1, 9, 30, tzinfo=UTC)
SCHEDULE = load_settings(payment_retry_schedule="1,3,5,7").payment_retry_days


def _due(engine: Engine, at: datetime) -> list[int]:
    with engine.connect() as conn:
        return invoices_to_charge(conn, at)


def test_a_card_that_always_fails_runs_the_whole_schedule_then_is_written_off(
    engine: Engine, gateway, open_invoice
) -> None:
    invoice = open_invoice("pm_card_chargeCustomerFail", gateway=gateway)
    assert (
        charge_invoice(engine, gateway, invoice.id, now=T0, retry_days=SCHEDULE).status == "failed"
    )

    for days in SCHEDULE:
        retry_at = T0 + timedelta(days=days)
        assert invoice.id not in _due(engine, retry_at - timedelta(seconds=1))
        assert invoice.id in _due(engine, retry_at)
        outcome = charge_invoice(engine, gateway, invoice.id, now=retry_at, retry_days=SCHEDULE)
        assert outcome.status == "failed"

    rows = payment_rows(engine, invoice.id)
    assert [r["attempt"] for r in rows] == [1, 2, 3, 4, 5]
    assert [r["next_retry_at"] for r in rows] == [
        *(T0 + timedelta(days=d) for d in SCHEDULE),
        None,
    ]
    assert invoice_status(engine, invoice.id) == "uncollectible"
    assert invoice.id not in _due(engine, T0 + timedelta(days=365))
    assert outbox_types(engine, [str(r["id"]) for r in rows]).count("billing.payment.failed") == 5
    with engine.connect() as conn:
        actor = conn.scalar(
            sa.text(
                "select actor from dictamesh_billing_audit_log"
                " where action = 'invoice.uncollectible' and entity_id = :n"
            ),
            {"n": invoice.number},
        )
    assert actor == "dunning"


def test_a_new_card_before_the_retry_gets_the_invoice_paid(
    engine: Engine, gateway, open_invoice
) -> None:
    invoice = open_invoice("pm_card_chargeCustomerFail", gateway=gateway)
    charge_invoice(engine, gateway, invoice.id, now=T0, retry_days=SCHEDULE)
    add_payment_method(
        engine, gateway, invoice.customer.organization_id, payment_method_id="pm_card_visa"
    )

    retry = charge_invoice(
        engine, gateway, invoice.id, now=T0 + timedelta(days=1), retry_days=SCHEDULE
    )

    assert retry.status == "succeeded"
    assert [r["status"] for r in payment_rows(engine, invoice.id)] == ["failed", "succeeded"]
    assert invoice_status(engine, invoice.id) == "paid"


def test_an_empty_schedule_writes_off_after_the_first_failure(
    engine: Engine, gateway, open_invoice
) -> None:
    invoice = open_invoice("pm_card_chargeCustomerFail", gateway=gateway)
    charge_invoice(engine, gateway, invoice.id, now=T0, retry_days=())
    assert invoice_status(engine, invoice.id) == "uncollectible"


def test_an_invoice_without_a_payment_method_is_never_charged(
    engine: Engine, gateway, open_invoice
) -> None:
    invoice = open_invoice(None)
    assert invoice.id not in _due(engine, T0)
    assert charge_invoice(engine, gateway, invoice.id, now=T0).status == "skipped"
    assert payment_rows(engine, invoice.id) == []


def test_a_bad_retry_schedule_is_one_line_naming_the_variable() -> None:
    import pytest

    from dagster_billing.settings import ConfigError

    with pytest.raises(ConfigError, match=r"^PAYMENT_RETRY_SCHEDULE: days must increase"):
        load_settings(payment_retry_schedule="3,1")
    with pytest.raises(ConfigError, match=r"^PAYMENT_RETRY_SCHEDULE: must be comma-separated"):
        load_settings(payment_retry_schedule="1,x")
    assert load_settings(payment_retry_schedule="").payment_retry_days == ()
    secrets = load_settings(stripe_webhook_secret="whsec_a, whsec_b").stripe_webhook_secrets
    assert secrets == ("whsec_a", "whsec_b")
