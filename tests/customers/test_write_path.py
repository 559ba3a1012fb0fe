"""The customers write path against a real warehouse: the rows dbt reads, the audit log,
the outbox events, and refusals that name the field."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import jsonschema
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing import customers
from dagster_billing.customers import CustomerError, NotFoundError
from dagster_billing.customers.entitlements import EntitlementExceededError, check, entitlements
from dagster_billing.events import catalog

T0 = datetime(2026, 4, 1, tzinfo=UTC)


def at(day: int, month: int = 4) -> datetime:
    return datetime(2026, month, day, tzinfo=UTC)


@pytest.fixture(scope="module")
def story(engine: Engine) -> str:
    """Organization `acme` on starter with 5 seats from Apr 1, upgraded on Apr 16."""
    with engine.begin() as conn:
        customers.create_organization(
            conn, external_id="acme", name="Acme", currency="USD", actor="test"
        )
        customers.create_subscription(
            conn,
            organization="acme",
            plan="starter",
            seats=5,
            start=T0,
            external_id="sub-acme",
            actor="test",
        )
        customers.change_subscription(
            conn, "sub-acme", plan="professional", effective_at=at(16), actor="test"
        )
    return "sub-acme"


def test_a_subscription_and_its_changes_are_the_rows_dbt_reads(engine: Engine, story: str) -> None:
    with engine.connect() as conn:
        sub = conn.execute(
            sa.text(
                "select plan_id, seats, billing_anchor, started_at, cancel_at, billing_cycle"
                " from dictamesh_billing_subscriptions where external_id = :s"
            ),
            {"s": story},
        ).one()
        changes = conn.execute(
            sa.text(
                "select c.effective_at, c.plan_id, c.seats, c.reason from"
                " dictamesh_billing_subscription_changes c join dictamesh_billing_subscriptions s"
                " on s.id = c.subscription_id where s.external_id = :s"
            ),
            {"s": story},
        ).all()
    # the subscription row keeps its initial state; the upgrade is history
    assert tuple(sub) == ("starter", 5, T0, T0, None, "monthly")
    assert [tuple(c) for c in changes] == [(at(16), "professional", None, "upgrade")]


def test_reading_a_subscription_gives_the_state_in_force(engine: Engine, story: str) -> None:
    with engine.connect() as conn:
        before = customers.get_subscription(conn, story, now=at(10))
        after = customers.get_subscription(conn, story, now=at(20))
    assert (before["current_plan_id"], before["current_seats"]) == ("starter", 5)
    assert (after["current_plan_id"], after["current_seats"]) == ("professional", 5)
    assert after["current_period"] == (T0, at(1, 5))


def test_every_change_is_audited_and_published(engine: Engine, story: str) -> None:
    with engine.connect() as conn:
        audited = conn.execute(
            sa.text(
                "select action, actor from dictamesh_billing_audit_log"
                " where entity_id in ('acme', 'sub-acme') order by id"
            )
        ).all()
        events = conn.execute(
            sa.text(
                "select event_type, payload from dictamesh_billing_outbox"
                " where aggregate_id = :s order by id"
            ),
            {"s": story},
        ).all()
    assert [tuple(a) for a in audited[:3]] == [
        ("organization.created", "test"),
        ("subscription.created", "test"),
        ("subscription.upgrade", "test"),
    ]
    assert [e.event_type for e in events[:2]] == [
        "billing.subscription.created",
        "billing.subscription.updated",
    ]
    assert events[1].payload["changes"]["plan_id"]["to"] == "professional"
    for event in events:  # the write path publishes the catalogue's documented payloads
        jsonschema.validate(event.payload, catalog.load_schema(event.event_type))
    assert events[1].payload["effective_at"] == "2026-04-16T00:00:00+00:00"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda c: customers.create_organization(
                c, external_id="x1", name="X", currency="CHF", actor="t"
            ),
            "currency: no price book for currency 'CHF'",
        ),
        (
            lambda c: customers.create_organization(
                c, external_id="acme", name="X", currency="USD", actor="t"
            ),
            "external_id: organization 'acme' already exists",
        ),
        (
            lambda c: customers.create_subscription(
                c, organization="acme", plan="platinum", seats=1, actor="t"
            ),
            "plan: unknown plan 'platinum'",
        ),
        (
            lambda c: customers.change_subscription(
                c, "sub-acme", seats=7, effective_at=at(1, 3), actor="t"
            ),
            "effective_at: before the subscription's start 2026-04-01T00:00:00.000000Z",
        ),
        (
            lambda c: customers.change_subscription(
                c, "sub-acme", seats=7, effective_at=at(10), actor="t"
            ),
            "effective_at: must be after the latest change",
        ),
        (
            lambda c: customers.create_subscription(
                c, organization="acme", plan="starter", seats=1, start=at(1, 6), actor="t"
            ),
            "start: overlaps subscription 'sub-acme'",
        ),
        (
            lambda c: customers.update_organization(c, "acme", {"tax_rate": Decimal(2)}, actor="t"),
            "tax_rate: must be >= 0 and < 1, got 2",
        ),
    ],
)
def test_refusals_name_the_field(engine: Engine, story: str, call, message: str) -> None:
    with engine.begin() as conn, pytest.raises(CustomerError) as refused:
        call(conn)
    assert str(refused.value).startswith(message)


def test_free_plan_sells_no_extra_seats(engine: Engine) -> None:
    with engine.begin() as conn:
        customers.create_organization(
            conn, external_id="tiny", name="Tiny", currency="EUR", actor="t"
        )
        with pytest.raises(CustomerError, match=r"^seats: plan 'free' sells no extra seats"):
            customers.create_subscription(
                conn, organization="tiny", plan="free", seats=2, actor="t"
            )


def test_cancel_at_period_end_sets_the_period_end_and_keeps_it_active(engine: Engine) -> None:
    with engine.begin() as conn:
        customers.create_organization(
            conn, external_id="leaver", name="Leaver", currency="GBP", actor="t"
        )
        customers.create_subscription(
            conn,
            organization="leaver",
            plan="starter",
            seats=3,
            start=at(31, 1),
            external_id="sub-leaver",
            actor="t",
        )
        canceled = customers.cancel_subscription(
            conn, "sub-leaver", at_period_end=True, at=at(10, 3), actor="t"
        )
        event = conn.execute(
            sa.text(
                "select payload from dictamesh_billing_outbox where aggregate_id = 'sub-leaver'"
                " and event_type = 'billing.subscription.canceled'"
            )
        ).scalar_one()
    # anchor Jan 31: periods end Feb 28, Mar 31 (month-end rule)
    assert canceled["cancel_at"] == at(31, 3)
    assert canceled["status"] == "active"
    assert event == {**event, "ends_at": "2026-03-31T00:00:00+00:00"}


def test_cancel_now_ends_it_and_a_second_cancel_is_refused(engine: Engine) -> None:
    with engine.begin() as conn:
        customers.create_organization(
            conn, external_id="gone", name="Gone", currency="USD", actor="t"
        )
        customers.create_subscription(
            conn,
            organization="gone",
            plan="starter",
            seats=3,
            start=T0,
            external_id="sub-gone",
            actor="t",
        )
        canceled = customers.cancel_subscription(conn, "sub-gone", at=at(20), actor="t")
        assert canceled["cancel_at"] == at(20) and canceled["status"] == "canceled"
        with pytest.raises(CustomerError, match=r"^subscription: already ended"):
            customers.cancel_subscription(conn, "sub-gone", at=at(21), actor="t")


def test_credits_and_promotions(engine: Engine, story: str) -> None:
    with engine.begin() as conn:
        customers.grant_credit(conn, "acme", amount=Decimal("50"), actor="t")
        customers.grant_credit(
            conn, "acme", amount=Decimal("5"), expires_at=at(1, 1), actor="t"
        )  # already expired
        first = customers.add_promotion(
            conn, "acme", code="WELCOME", percent_off=Decimal("20"), duration_periods=1, actor="t"
        )
        second = customers.add_promotion(
            conn, "acme", code="TEN", amount_off=Decimal("10"), actor="t"
        )
        balance = customers.credit_balance(conn, "acme", now=at(1, 5))
    assert (first["position"], second["position"]) == (1, 2)
    assert balance == {"organization": "acme", "currency": "USD", "balance": Decimal("50")}


def test_entitlements_follow_the_plan_in_force(engine: Engine, story: str) -> None:
    with engine.connect() as conn:
        found = entitlements(conn, "acme")
        assert found.plan_id == "professional"
        assert found.limits == {"adapters": Decimal(25), "seats": Decimal(5)}
        assert check(conn, "acme", "adapters", Decimal(25))["allowed"] == Decimal(25)
        with pytest.raises(EntitlementExceededError, match=r"^adapters: 26 exceeds"):
            check(conn, "acme", "adapters", Decimal(26))
        with pytest.raises(NotFoundError):
            entitlements(conn, "nobody")
