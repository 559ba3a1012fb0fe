"""Invoice finalization and PDF throughput against a bare WeasyPrint page, same run.

    .venv/bin/python benchmarks/pdf.py [--invoices 2000] [--workers 2]

Starts a private embedded Postgres, fills the draft marts (docs/invoice-marts.md) with
`--invoices` drafts of 12 lines (tiered overage, every tenth with a credit), then times:
finalization of the whole billing day without PDFs; rendering and storing every PDF in
`--workers` processes; and, as the baseline, the same number of workers rendering a
one-line HTML page with bare WeasyPrint. Targets: >= 12 PDFs/s on 2 cores and >= 1,000
finalized invoices/s.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa

from dagster_billing.catalog import load_catalog
from dagster_billing.catalog.sync import sync_catalog
from dagster_billing.invoicing.document import Seller
from dagster_billing.invoicing.finalize import finalize_window
from dagster_billing.invoicing.marts import CONTRACT_DDL
from dagster_billing.invoicing.pdf import missing_pdfs, store_pdfs
from dagster_billing.warehouse import migrate
from dagster_billing.warehouse.database import _psycopg_url, embedded_server, ensure_database

BILLING_DAY = datetime(2026, 11, 1, tzinfo=UTC)
PERIOD_END = datetime(2026, 12, 1, tzinfo=UTC)
SELLER = Seller("DictaMesh Inc.", "100 Mesh Street; San Francisco, CA 94105", "", "Bank transfer.")
BARE_PAGE = "<html><body><p>One line.</p></body></html>"


def _bare_render(_: int) -> int:
    import weasyprint

    return len(weasyprint.HTML(string=BARE_PAGE).write_pdf())


def _lines(n: int) -> list[tuple]:
    """12 lines like a busy Professional month: fee, seats, tiered overages, adjustments."""
    tiers = [
        {"tier": 1, "quantity": "1000", "unit_amount": "0.200000", "amount": "200.00"},
        {"tier": 2, "quantity": "234", "unit_amount": "0.150000", "amount": "35.10"},
    ]
    rows = [("subscription_fee", "Professional (monthly)", None, 1, "199.00", "199.00", [])]
    rows.append(("seats", "Extra seats", None, 4, "15.00", "60.00", []))
    for metric in ("api_calls", "storage", "transfer", "query_processing"):
        rows.append(("overage", f"{metric} overage", metric, 1234, None, "235.10", tiers))
    for i in range(6):
        rows.append(("adjustment", f"Usage correction {i + 1}", "api_calls", 1, "1.50", "1.50", []))
    return rows


def _fill(conn: sa.Connection, count: int) -> None:
    orgs = conn.execute(
        sa.text(
            "insert into dictamesh_billing_organizations (external_id, name, currency, locale)"
            " select 'bench-' || g, 'Benchmark Customer ' || g || ' Ltd', 'USD', 'en_US'"
            " from generate_series(1, :n) g returning id, external_id"
        ),
        {"n": count},
    ).all()
    subs = conn.execute(
        sa.text(
            "insert into dictamesh_billing_subscriptions (external_id, organization_id, plan_id,"
            " billing_cycle, seats, billing_anchor, started_at)"
            " select 'sub-' || o.external_id, o.id, 'professional', 'monthly', 9,"
            " :d, :d from dictamesh_billing_organizations o where o.external_id like 'bench-%'"
            " order by o.id returning id, organization_id, external_id"
        ),
        {"d": BILLING_DAY},
    ).all()
    org_external = {org.id: org.external_id for org in orgs}
    template = _lines(0)
    subtotal = sum(Decimal(line[5]) for line in template)
    tax = (subtotal * Decimal("0.10")).quantize(Decimal("0.01"))
    invoices, lines, credits = [], [], []
    for index, sub in enumerate(subs):
        key = f"{sub.external_id}/{BILLING_DAY.isoformat()}"
        applied = Decimal("20.00") if index % 10 == 0 else Decimal(0)
        if applied:
            grant_id = conn.execute(
                sa.text(
                    "insert into dictamesh_billing_credits (organization_id, entry_type,"
                    " credit_type, amount, currency, description) values"
                    " (:o, 'grant', 'goodwill', 50, 'USD', 'Goodwill credit') returning id"
                ),
                {"o": sub.organization_id},
            ).scalar_one()
            credits.append({"k": key, "c": grant_id, "a": applied})
        invoices.append(
            {
                "k": key,
                "s": sub.id,
                "se": sub.external_id,
                "o": sub.organization_id,
                "oe": org_external[sub.organization_id],
                "d": BILLING_DAY,
                "e": PERIOD_END,
                "sub": subtotal,
                "tax": tax,
                "tot": subtotal + tax,
                "cr": applied,
                "due": subtotal + tax - applied,
            }
        )
        for number, (kind, desc, metric, qty, unit, amount, tier) in enumerate(template, 1):
            lines.append(
                {
                    "k": key,
                    "n": number,
                    "kind": kind,
                    "desc": desc,
                    "m": metric,
                    "q": qty,
                    "u": unit,
                    "a": amount,
                    "ps": BILLING_DAY,
                    "pe": PERIOD_END,
                    "t": json.dumps(tier),
                }
            )
    conn.execute(
        sa.text(
            "insert into analytics.fct_invoices values (:k, :s, :se, :o, :oe, :d, :d, :e, 1,"
            " 'USD', :sub, 0, 0.10, :tax, :tot, :cr, :due, 0)"
        ),
        invoices,
    )
    conn.execute(
        sa.text(
            "insert into analytics.fct_invoice_line_items values (:k, :n, :kind, :desc, :m,"
            " :q, :u, :a, :ps, :pe, cast(:t as jsonb), null)"
        ),
        lines,
    )
    if credits:
        conn.execute(
            sa.text("insert into analytics.fct_invoice_credit_applications values (:k, :c, :a)"),
            credits,
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invoices", type=int, default=2000)
    parser.add_argument("--workers", type=int, default=2)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-pdf-") as tmp:
        server = embedded_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        url = _psycopg_url(server.get_uri("postgres")).set(database="bench")
        ensure_database(url, "bench")
        engine = sa.create_engine(url)
        migrate.upgrade(engine)
        with engine.begin() as conn:
            sync_catalog(conn, load_catalog())
            conn.execute(sa.text(CONTRACT_DDL))
            _fill(conn, args.invoices)

        start = time.perf_counter()
        with engine.begin() as conn:
            result = finalize_window(
                conn, BILLING_DAY, BILLING_DAY + timedelta(days=1), prefix="INV-", due_days=30
            )
        finalize_seconds = time.perf_counter() - start
        assert len(result.numbers) == args.invoices, result

        start = time.perf_counter()
        with engine.begin() as conn:
            ids = missing_pdfs(conn, BILLING_DAY, BILLING_DAY + timedelta(days=1))
            stored = store_pdfs(
                conn, ids, seller=SELLER, data_dir=Path(tmp) / "data", workers=args.workers
            )
        pdf_seconds = time.perf_counter() - start
        assert len(stored) == args.invoices

        start = time.perf_counter()
        with ProcessPoolExecutor(max_workers=args.workers) as pool:
            list(pool.map(_bare_render, range(args.invoices), chunksize=8))
        bare_seconds = time.perf_counter() - start
        engine.dispose()
        server.cleanup()

    n = args.invoices
    pdf_rate, bare_rate = n / pdf_seconds, n / bare_seconds
    rows = [
        ("finalization (no PDFs)", f"{n / finalize_seconds:9.1f} invoices/s", finalize_seconds),
        ("invoice PDFs", f"{pdf_rate:9.1f} PDFs/s", pdf_seconds),
        ("bare WeasyPrint page", f"{bare_rate:9.1f} pages/s", bare_seconds),
    ]
    print(f"invoices: {n} x 12 lines, {args.workers} worker processes")
    for label, rate, seconds in rows:
        print(f"{label:<24} {rate:<22} ({seconds:.2f} s)")
    print(f"{'ratio invoice / bare':<24} {pdf_rate / bare_rate:9.2f}")
    print(f"{'end to end':<24} {n / (finalize_seconds + pdf_seconds):9.1f} invoices/s")


if __name__ == "__main__":
    main()
