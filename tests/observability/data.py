"""Operations data for the metrics tests: the demo's customers and usage (the real demo
loaders), plus the rows other parts of the platform write — invoices, payment attempts,
outbox events, webhooks, rejects — placed relative to now so ages and buckets are known.

Every amount and count below is what the tests assert, worked out by hand.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.demo import load_demo_data, load_demo_usage
from dagster_billing.events.outbox import Event, write_events
from dagster_billing.events.relay import mark_published
from dagster_billing.observability.runs import run_failure_event
from dagster_billing.warehouse import schema
from dagster_billing.warehouse.partitions import ensure_partitions_for

# dbt's default schema; each test module has a database of its own, so nothing clashes.
MART_SCHEMA = "analytics"


def _ids(conn: Connection, table: sa.Table) -> dict[str, int]:
    return dict(conn.execute(sa.select(table.c.external_id, table.c.id)).tuples().all())


def load_operations_data(conn: Connection, now: datetime) -> None:
    load_demo_data(conn)
    load_demo_usage(conn)
    orgs, subs = _ids(conn, schema.organizations), _ids(conn, schema.subscriptions)
    hour = now.replace(minute=0, second=0, microsecond=0) - timedelta(hours=3)
    ensure_partitions_for(conn, hour, hour + timedelta(hours=1))
    conn.execute(
        sa.insert(schema.usage_metrics),
        [
            {"organization_id": orgs["acme"], "metric": "api_calls", "hour_start": hour,
             "quantity": Decimal("1200"), "source": "api"},
            {"organization_id": orgs["globex"], "metric": "api_calls", "hour_start": hour,
             "quantity": Decimal("300"), "source": "api"},
            {"organization_id": orgs["globex"], "metric": "storage", "hour_start": hour,
             "quantity": Decimal("420.5"), "source": "api"},
        ],
    )  # fmt: skip
    conn.execute(
        sa.insert(schema.usage_rejects),
        [
            {"hour_start": hour, "source": "prometheus", "organization": "nobody",
             "metric": "api_calls", "reason": "unknown_organization"},
            {"hour_start": hour - timedelta(days=3), "source": "prometheus",
             "organization": "acme", "metric": "api_calls", "reason": "nan"},
        ],
    )  # fmt: skip

    # Invoices: (org, number, status, due days from now, amount due)
    invoices = [
        ("acme", "OPS-1", "paid", -20, "228.21"),
        ("globex", "OPS-2", "open", 10, "1200.00"),
        ("umbrella", "OPS-3", "open", -45, "2400.00"),
        ("vandelay", "OPS-4", "open", -100, "150.00"),
        ("initech", "OPS-5", "uncollectible", -40, "5000"),
    ]
    ids = {}
    for n, (org, number, status, due_days, due) in enumerate(invoices):
        currency = conn.scalar(
            sa.select(schema.organizations.c.currency).where(schema.organizations.c.id == orgs[org])
        )
        start = datetime(2026, 1 + n, 1, tzinfo=UTC)
        ids[number] = conn.execute(
            sa.insert(schema.invoices)
            .values(
                number=number, organization_id=orgs[org], subscription_id=subs[f"sub-{org}"],
                period_start=start, period_end=start + timedelta(days=28), currency=currency,
                status=status, subtotal=Decimal(due), total=Decimal(due),
                amount_due=Decimal(due), issued_at=now + timedelta(days=due_days - 30),
                due_at=now + timedelta(days=due_days),
                paid_at=now - timedelta(days=21) if status == "paid" else None,
            )
            .returning(schema.invoices.c.id)
        ).scalar_one()  # fmt: skip

    # Payment attempts: (invoice, attempt, status, failure_code)
    attempts = [
        ("OPS-1", 1, "failed", "card_declined"),
        ("OPS-1", 2, "succeeded", None),
        ("OPS-3", 1, "failed", "card_declined"),
        ("OPS-3", 2, "failed", "insufficient_funds"),
        ("OPS-3", 3, "processing", None),
        ("OPS-4", 1, "failed", None),
    ]
    conn.execute(
        sa.insert(schema.payments),
        [
            {"invoice_id": ids[inv], "attempt": attempt, "amount": Decimal("10"),
             "currency": "USD", "status": status, "failure_code": code,
             "idempotency_key": f"ops-{inv}-{attempt}"}
            for inv, attempt, status, code in attempts
        ],
    )  # fmt: skip

    events = [
        Event("billing.invoice.created", "invoice", str(i), f"ops:{i}", {"n": i}, now)
        for i in range(3)
    ]
    write_events(conn, events)
    conn.execute(
        sa.update(schema.outbox)
        .where(schema.outbox.c.dedupe_key == "ops:0")
        .values(created_at=now - timedelta(minutes=30))
    )
    ops_0 = sa.select(schema.outbox.c.id).where(schema.outbox.c.dedupe_key == "ops:0")
    mark_published(conn, list(conn.scalars(ops_0)))
    conn.execute(
        sa.update(schema.outbox)
        .where(schema.outbox.c.dedupe_key == "ops:1")
        .values(created_at=now - timedelta(minutes=10))
    )
    conn.execute(
        sa.insert(schema.stripe_webhook_events),
        [
            {"stripe_event_id": "evt_1", "event_type": "payment_intent.succeeded",
             "payload": {}, "signature_verified": True, "status": "processed",
             "received_at": now - timedelta(minutes=50), "processed_at": now},
            {"stripe_event_id": "evt_2", "event_type": "payment_intent.payment_failed",
             "payload": {}, "signature_verified": True, "status": "received",
             "received_at": now - timedelta(minutes=5), "processed_at": None},
        ],
    )  # fmt: skip


def load_credits(conn: Connection) -> None:
    """EUR 30 granted, 12.50 applied: 17.50 left. GBP 10 granted, 15 applied: a grant
    over-applied to -5, which the ledger should never allow (the alert's case)."""
    orgs = _ids(conn, schema.organizations)
    for org, currency, granted, applied in (
        ("globex", "EUR", "30", "-12.5"),
        ("umbrella", "GBP", "10", "-15"),
    ):
        row = {"organization_id": orgs[org], "credit_type": "prepaid", "currency": currency}
        grant_id = conn.execute(
            sa.insert(schema.credits)
            .values(
                **row,
                entry_type="grant",
                amount=Decimal(granted),
                idempotency_key=f"ops-{currency}",
            )
            .returning(schema.credits.c.id)
        ).scalar_one()
        conn.execute(
            sa.insert(schema.credits).values(
                **row, entry_type="application", grant_id=grant_id, amount=Decimal(applied)
            )
        )


def load_run_failure(conn: Connection, now: datetime) -> None:
    """One failed invoicing run, recorded as the run-failure sensor records it."""
    run = dg.DagsterRun(
        job_name="invoicing_daily", run_id="0f9c5e1e-0000-4000-8000-000000000001",
        tags={"dagster/partition": "2026-11-01"},
    )  # fmt: skip
    write_events(conn, [run_failure_event(run, "Execution of run failed.", now)])


def create_revenue_marts(conn: Connection, mart_schema: str = MART_SCHEMA) -> None:
    """fct_mrr / fct_arr with the columns the collector reads, for tests that do not run
    dbt: two organizations in the newest month (100.50 + 49.50 USD), one in the month
    before (which must not count)."""
    conn.execute(sa.text(f"create schema if not exists {mart_schema}"))
    conn.execute(
        sa.text(
            f"create table {mart_schema}.fct_mrr as select * from (values"
            " (1, date '2026-10-01', 10.000000::numeric(20,6)),"
            " (1, date '2026-11-01', 100.500000), (2, date '2026-11-01', 49.500000))"
            " as t(organization_id, month, mrr_usd)"
        )
    )
    conn.execute(
        sa.text(
            f"create table {mart_schema}.fct_arr as select organization_id, month,"
            f" mrr_usd * 12 as arr_usd from {mart_schema}.fct_mrr"
        )
    )
