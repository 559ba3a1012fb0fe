"""Events of every catalogue type, written the way production writes them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

from sqlalchemy.engine import Engine

from dagster_billing.events import catalog
from dagster_billing.events.outbox import write_events
from dagster_billing.invoicing.lifecycle import mark_overdue, mark_paid
from tests.invoicing.conftest import Billing, Customer, Line, day

AT = datetime(2026, 11, 2, 9, tzinfo=UTC)


def every_type(billing: Billing, engine: Engine) -> tuple[str, str]:
    """Two organizations, each with one event of every catalogue type, written by the
    code that writes them in production where it exists (finalize, pay, overdue), else
    by the catalogue builder that code calls. (A failed run has no organization: its
    Kafka key is the run id.)"""
    orgs = []
    for n, currency in enumerate(("USD", "EUR")):
        customer = billing.customer(currency=currency)
        org = customer.organization_external_id
        grant = billing.grant(customer, "10.00")
        key = billing.draft(
            customer,
            day(3, 1 + n),
            [Line("Starter (monthly)", Decimal("49.00"), unit_amount=Decimal("49.00"))],
            credits=[(grant, "10.00")],
        )
        billing.finalize(day(3, 1 + n), prefix=f"EV{n}-")
        invoice = billing.invoice(key)
        with engine.begin() as conn:
            mark_overdue(conn, day(5, 1))
            mark_paid(conn, str(invoice["number"]), at=day(5, 2))
            write_events(
                conn,
                [
                    catalog.subscription_created(
                        subscription_id=customer.subscription_external_id,
                        organization_id=org,
                        plan_id="starter",
                        billing_cycle="monthly",
                        seats=5,
                        started_at=day(1, 1),
                    ),
                    catalog.subscription_updated(
                        subscription_id=customer.subscription_external_id,
                        organization_id=org,
                        effective_at=day(2, 1),
                        change_id="1",
                        changes={"plan_id": {"from": "starter", "to": "professional"}},
                    ),
                    catalog.subscription_canceled(
                        subscription_id=customer.subscription_external_id,
                        organization_id=org,
                        canceled_at=day(6, 1),
                        ends_at=day(7, 1),
                        reason="moving on",
                    ),
                    catalog.subscription_renewal_upcoming(
                        subscription_id=customer.subscription_external_id,
                        organization_id=org,
                        plan_id="starter",
                        renews_at=day(12, 1),
                        amount=Decimal("990.00"),
                        currency=currency,
                        as_of=day(11, 1),
                    ),
                    catalog.payment_succeeded(
                        catalog.Charge(
                            f"pay-{org}-1",
                            int(invoice["id"]),
                            str(invoice["number"]),
                            customer.organization_id,
                            Decimal("43.90"),
                            currency,
                            2,
                        ),
                        succeeded_at=day(5, 2),
                    ),
                    catalog.payment_failed(
                        catalog.Charge(
                            f"pay-{org}-0",
                            int(invoice["id"]),
                            str(invoice["number"]),
                            customer.organization_id,
                            Decimal("43.90"),
                            currency,
                            1,
                        ),
                        failed_at=day(4, 2),
                        failure_code="card_declined",
                        next_attempt_at=day(5, 2),
                    ),
                    catalog.invoice_voided(
                        invoice_id=int(invoice["id"]) + 1000,
                        number=f"EV{n}-VOID",
                        organization_id=customer.organization_id,
                        previous_status="open",
                        reason="issued twice",
                        voided_at=day(5, 3),
                        amount_due=Decimal("43.90"),
                        currency=currency,
                        credits_returned=Decimal("10.00"),
                    ),
                    catalog.payment_refunded(
                        payment_id=n + 1,
                        credit_note=f"EV{n}-CN-1",
                        invoice_id=int(invoice["id"]),
                        invoice_number=str(invoice["number"]),
                        organization_id=customer.organization_id,
                        amount=Decimal("5.00"),
                        currency=currency,
                        reason="goodwill",
                        refunded_at=day(6, 2),
                    ),
                    catalog.dagster_run_failed(
                        run_id=f"run-{org}",
                        job_name="billing_daily",
                        partition_key="2026-03-01",
                        error="dbt model int_invoice_lines failed",
                        failed_at=day(6, 3),
                    ),
                    catalog.usage_threshold_reached(
                        organization_db_id=customer.organization_id,
                        organization_id=org,
                        metric="api_calls",
                        threshold=80,
                        plan_id="starter",
                        quota=Decimal("1000000"),
                        usage=Decimal("800000"),
                        period_start=day(3, 1),
                        period_end=day(4, 1),
                        crossed_at=day(3, 20),
                    ),
                ],
            )
        orgs.append(org)
    return orgs[0], orgs[1]


def write_invoice_and_threshold(billing: Billing, engine: Engine, customer: Customer) -> None:
    """An invoice (finalized: billing.invoice.created) and a usage alert for `customer`."""
    key = billing.draft(
        customer,
        day(4, 1),
        [Line("Starter (monthly)", Decimal("49.00"), unit_amount=Decimal("49.00"))],
    )
    billing.finalize(day(4, 1), prefix=f"N{customer.organization_id}-")
    assert billing.invoice(key)["number"]
    with engine.begin() as conn:
        write_events(
            conn,
            [
                catalog.usage_threshold_reached(
                    organization_db_id=customer.organization_id,
                    organization_id=customer.organization_external_id,
                    metric="api_calls",
                    threshold=100,
                    plan_id="starter",
                    quota=Decimal("1000000"),
                    usage=Decimal("1000000"),
                    period_start=day(4, 1),
                    period_end=day(5, 1),
                    crossed_at=day(4, 20),
                )
            ],
        )


def write_seat_changes(engine: Engine, org: str, count: int, tag: str) -> list[str]:
    """`count` subscription updates for `org`, one second apart; returns their dedupe keys."""
    events = [
        catalog.subscription_updated(
            subscription_id=f"sub-{org}",
            organization_id=org,
            effective_at=AT + timedelta(seconds=n),
            change_id=f"{tag}-{n}",
            changes={"seats": {"from": n, "to": n + 1}},
        )
        for n in range(count)
    ]
    with engine.begin() as conn:
        write_events(conn, events)
    return [e.dedupe_key for e in events]
