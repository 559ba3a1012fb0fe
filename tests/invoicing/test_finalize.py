"""Finalization: numbered, immutable, idempotent invoices with credits and outbox events."""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timedelta
from decimal import Decimal

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine, make_url

from dagster_billing.invoicing import InvoicingError
from dagster_billing.invoicing.finalize import finalize_window
from dagster_billing.warehouse.database import Warehouse, make_engine
from tests.invoicing.conftest import Billing, Line, day

D = Decimal


def _starter(amount: str = "49.00") -> list[Line]:
    return [
        Line("Starter (monthly)", D(amount), unit_amount=D(amount)),
        Line("Extra seats", D("20.00"), kind="seats", quantity=D(2), unit_amount=D("10.00")),
    ]


def _events(engine: Engine, event_type: str, aggregate_id: str | None = None) -> list[dict]:
    query = "select * from dictamesh_billing_outbox where event_type = :t"
    if aggregate_id is not None:
        query += " and aggregate_id = :a"
    with engine.connect() as conn:
        return [
            dict(row)
            for row in conn.execute(sa.text(query), {"t": event_type, "a": aggregate_id}).mappings()
        ]


def test_a_draft_becomes_an_open_numbered_invoice_with_its_lines_and_event(
    billing: Billing, engine: Engine
) -> None:
    customer = billing.customer()
    key = billing.draft(customer, day(2, 1), _starter())
    result = billing.finalize(day(2, 1), prefix="FIN-")
    assert result.numbers == ["FIN-2026-000001"]

    invoice = billing.invoice(key)
    assert invoice["status"] == "open"
    assert invoice["number"] == "FIN-2026-000001"
    assert invoice["subtotal"] == D("69.00")
    assert invoice["tax"] == D("6.90")
    assert invoice["amount_due"] == D("75.90")
    assert invoice["issued_at"] == day(2, 1)
    assert invoice["due_at"] == day(3, 3)
    with engine.connect() as conn:
        lines = conn.execute(
            sa.text(
                "select line_number, kind, quantity, amount"
                " from dictamesh_billing_invoice_line_items"
                " where invoice_id = :i order by line_number"
            ),
            {"i": invoice["id"]},
        ).all()
    assert [tuple(line) for line in lines] == [
        (1, "subscription_fee", D(1), D("49.00")),
        (2, "seats", D(2), D("20.00")),
    ]
    (event,) = _events(engine, "billing.invoice.created", str(invoice["id"]))
    assert event["payload"]["number"] == "FIN-2026-000001"
    assert D(event["payload"]["amount_due"]) == D("75.90")


def test_rerunning_a_day_creates_no_second_invoice_or_number(billing: Billing) -> None:
    customer = billing.customer()
    billing.draft(customer, day(2, 2), _starter())
    first = billing.finalize(day(2, 2), prefix="RR-")
    again = billing.finalize(day(2, 2), prefix="RR-")
    assert first.numbers == ["RR-2026-000001"]
    assert again.numbers == []
    assert again.skipped == 1


def test_two_concurrent_runs_of_one_day_finalize_each_draft_once(
    billing: Billing, engine: Engine
) -> None:
    keys = [billing.draft(billing.customer(), day(2, 3), _starter()) for _ in range(8)]
    barrier = threading.Barrier(2)
    results, errors = [], []

    def run() -> None:
        try:
            with engine.begin() as conn:
                barrier.wait()
                results.append(
                    finalize_window(conn, day(2, 3), day(2, 4), prefix="CC-", due_days=30)
                )
        except Exception as exc:  # a failure must reach the assertion, not vanish in a thread
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert sorted(len(r.numbers) for r in results) == [0, 8]
    numbers = sorted(billing.invoice(key)["number"] for key in keys)
    assert numbers == [f"CC-2026-{n:06d}" for n in range(1, 9)]
    with engine.connect() as conn:
        assert (
            conn.scalar(
                sa.text(
                    "select last_value from dictamesh_billing_invoice_number_counters"
                    " where prefix = 'CC-' and year = 2026"
                )
            )
            == 8
        )


def _finalize_in_process(url: str, start: datetime) -> list[str]:
    """Runs in a spawned interpreter: its own engine, its own connection."""
    engine = make_engine(Warehouse(make_url(url), embedded=True))
    try:
        with engine.begin() as conn:
            return finalize_window(
                conn, start, start + timedelta(days=1), prefix="PP-", due_days=30
            ).numbers
    finally:
        engine.dispose()


def test_two_processes_finalizing_one_day_number_each_invoice_once(
    billing: Billing, warehouse: Warehouse
) -> None:
    keys = [billing.draft(billing.customer(), day(2, 20), _starter()) for _ in range(6)]
    url = warehouse.url.render_as_string(hide_password=False)
    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool:
        results = list(pool.map(_finalize_in_process, [url, url], [day(2, 20)] * 2))
    assert sorted(len(numbers) for numbers in results) == [0, 6]
    assert sorted(billing.invoice(key)["number"] for key in keys) == [
        f"PP-2026-{n:06d}" for n in range(1, 7)
    ]


def test_numbers_restart_each_year_and_a_rollback_returns_them(
    billing: Billing, engine: Engine
) -> None:
    first = billing.draft(billing.customer(), day(12, 31, 2026), _starter())
    second = billing.draft(billing.customer(), day(1, 1, 2027), _starter())
    with engine.begin() as conn:
        conn.begin_nested()
        finalize_window(conn, day(12, 31), day(1, 1, 2027), prefix="YR-", due_days=30)
        conn.rollback()
    assert billing.finalize(day(12, 31), prefix="YR-").numbers == ["YR-2026-000001"]
    assert billing.finalize(day(1, 1, 2027), prefix="YR-").numbers == ["YR-2027-000001"]
    assert billing.invoice(first)["number"] == "YR-2026-000001"
    assert billing.invoice(second)["number"] == "YR-2027-000001"


def test_a_finalized_invoice_and_its_lines_cannot_be_changed(
    billing: Billing, engine: Engine
) -> None:
    key = billing.draft(billing.customer(), day(2, 5), _starter())
    billing.finalize(day(2, 5), prefix="IM-")
    invoice_id = billing.invoice(key)["id"]
    refused = [
        "update dictamesh_billing_invoices set total = total + 1,"
        " amount_due = amount_due + 1 where id = :i",
        "update dictamesh_billing_invoices set number = 'IM-2026-999999' where id = :i",
        "update dictamesh_billing_invoices set status = 'draft' where id = :i",
        "delete from dictamesh_billing_invoices where id = :i",
        "update dictamesh_billing_invoice_line_items set amount = 0 where invoice_id = :i",
        "delete from dictamesh_billing_invoice_line_items where invoice_id = :i",
        "insert into dictamesh_billing_invoice_line_items (invoice_id, line_number, kind,"
        " description, quantity, amount) values (:i, 9, 'adjustment', 'x', 1, 1)",
    ]
    for statement in refused:
        with (
            pytest.raises(sa.exc.IntegrityError, match=r"finalized|refused|not allowed"),
            engine.begin() as conn,
        ):
            conn.execute(sa.text(statement), {"i": invoice_id})
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "update dictamesh_billing_invoices set pdf_path = 'x.pdf',"
                " pdf_sha256 = repeat('0', 64), status = 'paid', paid_at = now() where id = :i"
            ),
            {"i": invoice_id},
        )
    assert billing.invoice(key)["status"] == "paid"


def test_adjustment_lines_reference_the_invoice_they_correct(billing: Billing) -> None:
    customer = billing.customer()
    october = billing.draft(customer, day(3, 1), _starter())
    billing.finalize(day(3, 1), prefix="ADJ-")
    november = billing.draft(
        customer,
        day(4, 1),
        [
            *_starter(),
            Line(
                "API calls: late usage for March",
                D("3.50"),
                kind="adjustment",
                quantity=D(7),
                unit_amount=D("0.5"),
                metric="api_calls",
                adjusts_invoice_key=october,
            ),
        ],
        sequence=2,
    )
    billing.finalize(day(4, 1), prefix="ADJ-")
    with billing.engine.connect() as conn:
        adjusts = conn.execute(
            sa.text(
                "select adjusts_invoice_id from dictamesh_billing_invoice_line_items"
                " where invoice_id = :i and kind = 'adjustment'"
            ),
            {"i": billing.invoice(november)["id"]},
        ).scalar_one()
    assert adjusts == billing.invoice(october)["id"]


def test_an_adjustment_of_an_unknown_invoice_is_refused_naming_the_field(
    billing: Billing,
) -> None:
    customer = billing.customer()
    billing.draft(
        customer,
        day(4, 2),
        [Line("Correction", D("1.00"), kind="adjustment", adjusts_invoice_key="nope/2020")],
    )
    with pytest.raises(InvoicingError, match=r"adjusts_invoice_key: no finalized invoice 'nope"):
        billing.finalize(day(4, 2), prefix="ADX-")


def test_credits_are_recorded_as_applications_with_events(billing: Billing, engine: Engine) -> None:
    customer = billing.customer()
    grant = billing.grant(customer, "50.00")
    key = billing.draft(customer, day(5, 1), _starter(), credits=[(grant, "50.00")])
    result = billing.finalize(day(5, 1), prefix="CR-")
    assert result.credit_applications == 1
    invoice = billing.invoice(key)
    assert invoice["credits_applied"] == D("50.00")
    assert invoice["amount_due"] == D("25.90")
    with engine.connect() as conn:
        ledger = conn.execute(
            sa.text(
                "select entry_type, amount, invoice_id from dictamesh_billing_credits"
                " where grant_id = :g"
            ),
            {"g": grant},
        ).all()
    assert [tuple(row) for row in ledger] == [("application", D("-50.00"), invoice["id"])]
    (event,) = _events(engine, "billing.credit.applied", str(grant))
    assert event["payload"]["invoice_number"] == "CR-2026-000001"
    assert D(event["payload"]["amount"]) == D("50.00")


def test_a_credit_larger_than_its_grant_is_refused(billing: Billing) -> None:
    customer = billing.customer()
    grant = billing.grant(customer, "10.00")
    billing.draft(customer, day(5, 2), _starter(), credits=[(grant, "20.00")])
    with pytest.raises(InvoicingError, match=r"\.amount: 20.00 exceeds the remaining credit"):
        billing.finalize(day(5, 2), prefix="CRX-")


def test_a_zero_invoice_is_finalized_as_paid_and_a_balance_credit_is_carried(
    billing: Billing, engine: Engine
) -> None:
    customer = billing.customer()
    downgrade = billing.draft(
        customer,
        day(6, 1),
        [Line("Unused time on Professional", D("-30.00"), kind="proration")],
        balance_credit="30.00",
    )
    billing.finalize(day(6, 1), prefix="Z-")
    zero = billing.invoice(downgrade)
    assert (zero["status"], zero["amount_due"], zero["paid_at"]) == ("paid", D(0), day(6, 1))
    assert len(_events(engine, "billing.invoice.paid", str(zero["id"]))) == 1

    later = billing.draft(
        customer, day(7, 1), _starter(), credits=[(None, "30.00", downgrade)], sequence=2
    )
    billing.finalize(day(7, 1), prefix="Z-")
    with engine.connect() as conn:
        balance = conn.execute(
            sa.text(
                "select sum(amount) from dictamesh_billing_credits c where c.grant_id ="
                " (select id from dictamesh_billing_credits where invoice_id = :z"
                " and entry_type = 'grant') or (c.invoice_id = :z and c.entry_type = 'grant')"
            ),
            {"z": zero["id"]},
        ).scalar_one()
    assert balance == 0
    assert billing.invoice(later)["amount_due"] == D("45.90")


def test_finalization_spends_the_balance_credit_dbt_chose_not_its_own_pick(
    billing: Billing, engine: Engine
) -> None:
    """Two balance credits carried from June 2 and June 3; dbt's walk decided the July draft
    uses the June 3 one. Finalization copies that decision (it used to pick the oldest)."""
    customer = billing.customer()
    keys = [
        billing.draft(
            customer,
            day(6, n),
            [Line("Unused time", D("-30.00"), kind="proration")],
            balance_credit="30.00",
        )
        for n in (2, 3)
    ]
    for n in (2, 3):
        billing.finalize(day(6, n), prefix="BAL-")
    billing.draft(customer, day(7, 2), _starter(), credits=[(None, "30.00", keys[1])], sequence=3)
    billing.finalize(day(7, 2), prefix="BAL-")
    with engine.connect() as conn:
        remaining = dict(
            conn.execute(
                sa.text(
                    "select g.idempotency_key, sum(c.amount) from dictamesh_billing_credits g"
                    " join dictamesh_billing_credits c on c.id = g.id or c.grant_id = g.id"
                    " where g.organization_id = :o and g.entry_type = 'grant'"
                    " group by g.idempotency_key"
                ),
                {"o": customer.organization_id},
            ).all()
        )
    assert remaining == {f"balance:{keys[0]}": D("30.00"), f"balance:{keys[1]}": D(0)}


def test_a_draft_that_does_not_add_up_is_refused_naming_the_field(
    billing: Billing, engine: Engine
) -> None:
    customer = billing.customer()
    key = billing.draft(customer, day(8, 1), _starter())
    with engine.begin() as conn:
        conn.execute(
            sa.text("update analytics.fct_invoices set total = total + 1 where invoice_key = :k"),
            {"k": key},
        )
    with pytest.raises(InvoicingError, match=r"fct_invoices\[.*\]\.total: "):
        billing.finalize(day(8, 1), prefix="BAD-")
