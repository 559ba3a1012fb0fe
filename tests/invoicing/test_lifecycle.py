"""After finalization: void returns credits and is audited, overdue is flagged once."""

from __future__ import annotations

from decimal import Decimal

import jsonschema
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.events import catalog
from dagster_billing.invoicing import InvoicingError
from dagster_billing.invoicing.lifecycle import (
    mark_overdue,
    mark_paid,
    mark_uncollectible,
    void_invoice,
)
from dagster_billing.warehouse.audit import verify_chain
from tests.invoicing.conftest import Billing, Line, day

D = Decimal


def _fee() -> list[Line]:
    return [Line("Starter (monthly)", D("49.00"), unit_amount=D("49.00"))]


def _grant_balance(engine: Engine, grant: int) -> Decimal:
    with engine.connect() as conn:
        return conn.scalar(
            sa.text(
                "select sum(amount) from dictamesh_billing_credits where id = :g or grant_id = :g"
            ),
            {"g": grant},
        )


def test_voiding_an_open_invoice_returns_its_credits_and_is_audited(
    billing: Billing, engine: Engine
) -> None:
    customer = billing.customer()
    grant = billing.grant(customer, "30.00")
    key = billing.draft(customer, day(2, 10), _fee(), credits=[(grant, "20.00")])
    billing.finalize(day(2, 10), prefix="V-")
    assert _grant_balance(engine, grant) == D("10.00")
    number = billing.invoice(key)["number"]

    with engine.begin() as conn:
        result = void_invoice(
            conn, number, reason="Duplicate of a manual invoice", actor="ops@x", at=day(2, 12)
        )
    assert result.credits_returned == 1
    invoice = billing.invoice(key)
    assert (invoice["status"], invoice["voided_at"]) == ("void", day(2, 12))
    assert invoice["void_reason"] == "Duplicate of a manual invoice"
    assert _grant_balance(engine, grant) == D("30.00")
    with engine.connect() as conn:
        audit = conn.execute(
            sa.text(
                "select actor, payload from dictamesh_billing_audit_log"
                " where action = 'invoice.voided' and entity_id = :n"
            ),
            {"n": number},
        ).one()
        assert audit.actor == "ops@x"
        assert audit.payload["reason"] == "Duplicate of a manual invoice"
        assert verify_chain(conn).ok

    with (
        pytest.raises(InvoicingError, match="status: invoice V-2026-000001 is void"),
        engine.begin() as conn,
    ):
        void_invoice(conn, number, reason="again", actor="ops@x", at=day(2, 13))


def test_voiding_needs_a_reason(billing: Billing, engine: Engine) -> None:
    key = billing.draft(billing.customer(), day(2, 11), _fee())
    billing.finalize(day(2, 11), prefix="VR-")
    with pytest.raises(InvoicingError, match="reason: "), engine.begin() as conn:
        void_invoice(conn, billing.invoice(key)["number"], reason=" ", actor="ops", at=day(2, 11))
    assert billing.invoice(key)["status"] == "open"


def test_open_invoices_past_due_are_marked_overdue_once(billing: Billing, engine: Engine) -> None:
    late = billing.draft(billing.customer(), day(1, 5), _fee())
    paid = billing.draft(billing.customer(), day(1, 5), _fee())
    billing.finalize(day(1, 5), prefix="OD-", due_days=10)
    # which of the two gets number 1 depends on what earlier tests left in the warehouse
    number = billing.invoice(late)["number"]
    assert number.startswith("OD-2026-")
    with engine.begin() as conn:
        mark_paid(conn, billing.invoice(paid)["number"], at=day(1, 10))
        assert mark_overdue(conn, day(1, 15)) == []  # due at exactly Jan 15: not yet past
        assert mark_overdue(conn, day(1, 16)) == [number]
        assert mark_overdue(conn, day(1, 17)) == []
    assert billing.invoice(late)["overdue_at"] == day(1, 16)
    assert billing.invoice(paid)["overdue_at"] is None
    with engine.connect() as conn:
        events = conn.execute(
            sa.text(
                "select payload from dictamesh_billing_outbox"
                " where event_type = 'billing.invoice.overdue' and aggregate_id = :i"
            ),
            {"i": str(billing.invoice(late)["id"])},
        ).all()
    assert [e.payload["number"] for e in events] == [number]


def test_a_redelivered_payment_is_a_no_op(billing: Billing, engine: Engine) -> None:
    key = billing.draft(billing.customer(), day(2, 14), _fee())
    billing.finalize(day(2, 14), prefix="P-")
    number = billing.invoice(key)["number"]
    with engine.begin() as conn:
        assert mark_paid(conn, number, at=day(2, 15)) is True
    with engine.begin() as conn:
        assert mark_paid(conn, number, at=day(2, 16)) is False
    assert billing.invoice(key)["paid_at"] == day(2, 15)


def test_an_uncollectible_invoice_can_still_be_paid_but_not_reopened(
    billing: Billing, engine: Engine
) -> None:
    key = billing.draft(billing.customer(), day(2, 17), _fee())
    billing.finalize(day(2, 17), prefix="U-")
    number = billing.invoice(key)["number"]
    with engine.begin() as conn:
        mark_uncollectible(conn, number, reason="Dunning exhausted", actor="dunning", at=day(4, 1))
    assert billing.invoice(key)["status"] == "uncollectible"
    with pytest.raises(sa.exc.IntegrityError, match="not allowed"), engine.begin() as conn:
        conn.execute(
            sa.text("update dictamesh_billing_invoices set status = 'open' where number = :n"),
            {"n": number},
        )
    with engine.begin() as conn:
        assert mark_paid(conn, number, at=day(4, 2)) is True
    assert billing.invoice(key)["status"] == "paid"


def _edit(engine: Engine, number: str, assignments: str, **params: object) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(f"update dictamesh_billing_invoices set {assignments} where number = :n"),
            {"n": number, **params},
        )


@pytest.mark.parametrize(
    ("assignments", "refused"),
    [
        ("status = 'paid'", "paid_at"),
        ("status = 'void', void_reason = 'x'", "voided_at"),
        ("status = 'void', voided_at = now()", "void_reason"),
        ("paid_at = now()", "paid_at"),
        ("status = 'draft'", "not allowed"),
    ],
)
def test_the_database_refuses_a_status_without_its_fields(
    billing: Billing, engine: Engine, assignments: str, refused: str
) -> None:
    key = billing.draft(billing.customer(), day(3, 2), _fee())
    billing.finalize(day(3, 2), prefix="DB-")
    number = billing.invoice(key)["number"]
    with pytest.raises(sa.exc.IntegrityError, match=refused):
        _edit(engine, number, assignments)
    assert billing.invoice(key)["status"] == "open"


def test_lifecycle_fields_of_a_finalized_invoice_are_set_once(
    billing: Billing, engine: Engine
) -> None:
    paid_key = billing.draft(billing.customer(), day(3, 3), _fee())
    void_key = billing.draft(billing.customer(), day(3, 3), _fee())
    billing.finalize(day(3, 3), prefix="ONCE-")
    paid, void = billing.invoice(paid_key)["number"], billing.invoice(void_key)["number"]
    with engine.begin() as conn:
        mark_paid(conn, paid, at=day(3, 4))
        void_invoice(conn, void, reason="Sent twice", actor="ops", at=day(3, 4))
    _edit(engine, paid, "pdf_path = 'a.pdf', pdf_sha256 = :h", h="a" * 64)
    for number, assignments in [
        (paid, "paid_at = paid_at + interval '1 day'"),
        (paid, "paid_at = null, status = 'open'"),
        (paid, "status = 'void', voided_at = now(), void_reason = 'late'"),
        (paid, "pdf_sha256 = repeat('b', 64)"),
        (void, "void_reason = 'Something else'"),
        (void, "voided_at = voided_at + interval '1 hour'"),
        (void, "status = 'paid', paid_at = now(), voided_at = null, void_reason = null"),
    ]:
        with pytest.raises(sa.exc.IntegrityError, match=number):
            _edit(engine, number, assignments)
    invoice = billing.invoice(paid_key)
    assert (invoice["paid_at"], invoice["pdf_sha256"]) == (day(3, 4), "a" * 64)
    assert billing.invoice(void_key)["void_reason"] == "Sent twice"


def test_voiding_writes_an_outbox_event(billing: Billing, engine: Engine) -> None:
    customer = billing.customer()
    grant = billing.grant(customer, "10.00")
    key = billing.draft(customer, day(3, 5), _fee(), credits=[(grant, "10.00")])
    billing.finalize(day(3, 5), prefix="VE-")
    invoice = billing.invoice(key)
    with engine.begin() as conn:
        void_invoice(conn, invoice["number"], reason="Wrong seats", actor="ops", at=day(3, 6))
    with engine.connect() as conn:
        events = conn.execute(
            sa.text(
                "select dedupe_key, payload, occurred_at from dictamesh_billing_outbox"
                " where event_type = 'billing.invoice.voided' and aggregate_id = :i"
            ),
            {"i": str(invoice["id"])},
        ).all()
    assert [(e.dedupe_key, e.occurred_at) for e in events] == [
        (f"billing.invoice.voided:{invoice['id']}", day(3, 6))
    ]
    assert events[0].payload == {
        "invoice_id": invoice["id"],
        "number": "VE-2026-000001",
        "organization_id": customer.organization_id,
        "previous_status": "open",
        "reason": "Wrong seats",
        "voided_at": day(3, 6).isoformat(),
        "amount_due": "43.900000",
        "currency": "USD",
        "credits_returned": "10.000000",
    }
    jsonschema.validate(events[0].payload, catalog.load_schema("billing.invoice.voided"))
