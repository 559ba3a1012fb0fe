"""`billing demo` runs end to end, and a second run changes nothing."""

import re

import sqlalchemy as sa

from dagster_billing.warehouse.database import Warehouse, make_engine
from tests.test_cli import billing

TABLES = (
    "organizations",
    "subscriptions",
    "subscription_changes",
    "promotions",
    "credits",
    "audit_log",
    "price_books",
)


def _counts(warehouse: Warehouse) -> dict[str, int]:
    with make_engine(warehouse).connect() as conn:
        return {
            t: conn.scalar(sa.text(f"select count(*) from dictamesh_billing_{t}")) for t in TABLES
        }


def test_demo_twice_is_idempotent(blank_warehouse: Warehouse) -> None:
    dsn = blank_warehouse.libpq_url()
    first = billing("demo", dsn=dsn)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    assert "audit log: 10 rows, chain intact" in first.stdout
    assert re.search(r"demo data: \d+ new rows", first.stdout)
    # acme, Nov 1 (by hand from RATE_CARD.md): fee 99 + 2 extra seats x 49 = 197.00;
    # API calls 2,000/h x 744 h - 1,000,000 = 488 units x 0.01 = 4.88; storage 60 GB avg
    # - 50 = 10 x 0.50 = 5.00; queries 1.5 x 744 - 1,000 = 116 GB x 0.005 = 0.58;
    # subtotal 207.46, tax 10% = 20.746 -> 20.75, total 228.21 (the $50 credit went to Oct 1).
    assert (
        "sub-acme/2026-11-01T00:00:00Z        USD subtotal 207.46  discount 0.00  tax 20.75"
        "  total 228.21  credits 0.00  due 228.21"
    ) in first.stdout
    assert "MRR (analytics.fct_mrr, USD):" in first.stdout
    # the upgrade story: Vandelay (BRL) new 495 on Oct 1, expansion 2,000 on Oct 16
    assert "2026-10-16 00:00  vandelay   expansion    BRL     +2000.00" in first.stdout
    assert "revenue recognition (analytics.fct_deferred_revenue):" in first.stdout
    after_first = _counts(blank_warehouse)
    assert after_first["organizations"] == 5 and after_first["subscriptions"] == 5

    second = billing("demo", dsn=dsn)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "demo data: 0 new rows" in second.stdout
    assert "catalog: 0 rows changed" in second.stdout
    assert _counts(blank_warehouse) == after_first
