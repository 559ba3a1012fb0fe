"""`billing demo` runs end to end, and a second run changes nothing."""

import re
from pathlib import Path

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
    assert "audit log: 14 rows, chain intact" in first.stdout
    key = re.search(r"admin API key \(demo only; kept in .*\): (dmb_\S+)", first.stdout)
    assert key and f"Bearer {key.group(1)}" in first.stdout
    assert re.search(r"demo data: \d+ new rows", first.stdout)
    # acme, Nov 1 (by hand from docs/rate-card.md): fee 99 + 2 extra seats x 49 = 197.00;
    # API calls 2,000/h x 744 h - 1,000,000 = 488 units x 0.01 = 4.88; storage 60 GB avg
    # - 50 = 10 x 0.50 = 5.00; queries 1.5 x 744 - 1,000 = 116 GB x 0.005 = 0.58;
    # subtotal 207.46, tax 10% = 20.746 -> 20.75, total 228.21 (the $50 credit went to Oct 1).
    assert (
        "sub-acme/2026-11-01T00:00:00Z        USD subtotal 207.46  discount 0.00  tax 20.75"
        "  total 228.21  credits 0.00  due 228.21"
    ) in first.stdout
    assert "MRR (analytics.fct_mrr, USD):" in first.stdout
    # One line per stage before the summary; the Dagster and dbt chatter is in the log.
    stages = first.stdout.split("warehouse: postgresql")[0].splitlines()
    assert len(stages) <= 14, first.stdout[:3000]
    assert all(re.search(r"\(\d+\.\d s\)$", line) for line in stages[1:-1]), stages
    assert "BetaWarning" not in first.stdout + first.stderr
    assert "DEBUG" not in first.stdout + first.stderr
    log = Path(stages[0].removeprefix("full log: "))
    assert "STEP_SUCCESS" in log.read_text()
    assert re.search(r"daily assets 2026-10-01 \.\. 2026-11-01: \d+ materializations", first.stdout)
    # Payments against localstripe when it is installed (a dev extra), else skipped.
    assert re.search(r"^payments: (skipped|through localstripe: \d+ paid)", first.stdout, re.M)
    # Events go to Kafka only when a broker is configured; emails to files without SMTP.
    assert re.search(r"events: (no Kafka broker|\d+ published now)", first.stdout)
    assert re.search(r"notifications: [1-9]\d* sent .*, 0 failed \(", first.stdout)
    # the upgrade story: Vandelay (BRL) new 495 on Oct 1, expansion 2,000 on Oct 16
    assert "2026-10-16 00:00  vandelay   expansion    BRL     +2000.00" in first.stdout
    assert "revenue recognition (analytics.fct_deferred_revenue):" in first.stdout
    after_first = _counts(blank_warehouse)
    assert after_first["organizations"] == 5 and after_first["subscriptions"] == 5

    second = billing("demo", dsn=dsn)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "demo data: 0 new rows" in second.stdout
    assert "catalog: 0 rows changed" in second.stdout
    assert "admin API key (demo only; kept in" in second.stdout and key.group(1) in second.stdout
    assert "notifications: 0 sent" in second.stdout  # one delivery per event and recipient
    assert _counts(blank_warehouse) == after_first
