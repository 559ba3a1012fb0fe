"""A charge run against localstripe at Stripe's test-mode rate limit, with faults.

    .venv/bin/python benchmarks/payments.py [--invoices 2000] [--rate 25] [--workers 16]

Starts a private embedded Postgres and an in-memory localstripe on loopback, finalizes
`--invoices` open invoices (one organization and card each, set up outside the timing),
then charges them all with the product's `charge_invoice` in `--workers` threads through
the tests' loopback proxy (`tests/payments/stripe_proxy.py`: Stripe's idempotency
semantics, and 10% of the POSTs failing with a 500 or a timeout after Stripe processed
them), with the gateway's client-side rate limit at `--rate` requests/s. 16 workers by
default: a timeout fault holds its worker about 2 s (the 1 s client timeout, the SDK's
back-off, the retry), so at 25 requests/s with 10% faults about 5 workers are held at any
time, and with 8 the limiter often found no one waiting (600 invoices back to back: 0.926
of the limit with 8 workers, 0.986 with 16).

The proxy runs in a process of its own, as localstripe and Postgres do: in the measured
process it would compete for the GIL with the charging threads and count as our own work,
which it is not (in production it is Stripe's side of the network).

Baseline, same run: the same rate limit driving bare SDK `PaymentIntent.create` calls
(no database, no faults) through a fault-free proxy. Printed:
- Stripe requests/s (every HTTP request, the SDK's retries included: what the rate limit
  counts) against the limit (target >= 0.95);
- invoices/s against the limit and against the baseline. Each fault costs a retry, so
  with 10% of requests failing invoices/s cannot exceed limit x invoices/requests (about
  0.9 of the limit): the ceiling is printed beside it;
- duplicate PaymentIntents (target 0);
- our own work per invoice outside the Stripe call (target < 5 ms): mean wall time, also
  as a multiple of a bare `select 1` transaction measured in the same run, its median,
  and the CPU time our thread spent (wall time on a shared machine is mostly waiting for
  Postgres and for a CPU; the CPU time is what the code itself costs).
"""

from __future__ import annotations

import argparse
import importlib.util
import multiprocessing
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from dagster_billing.catalog import load_catalog
from dagster_billing.catalog.sync import sync_catalog
from dagster_billing.invoicing.finalize import finalize_window
from dagster_billing.invoicing.marts import CONTRACT_DDL
from dagster_billing.payments.charging import charge_invoice, invoices_to_charge
from dagster_billing.payments.customers import add_payment_method
from dagster_billing.payments.demo import DEMO_API_KEY, localstripe
from dagster_billing.payments.gateway import Intent
from dagster_billing.resources.stripe import StripeApi
from dagster_billing.settings import PROJECT_ROOT
from dagster_billing.warehouse import migrate
from dagster_billing.warehouse.database import _psycopg_url, embedded_server, ensure_database

BILLING_DAY = datetime(2026, 11, 1, tzinfo=UTC)


def _load_proxy() -> Any:
    """The tests' proxy, loaded by path: tests/ is not an installed package."""
    path = PROJECT_ROOT / "tests" / "payments" / "stripe_proxy.py"
    spec = importlib.util.spec_from_file_location("stripe_proxy", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["stripe_proxy"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module.StripeProxy


CLIENT_TIMEOUT = 1.0


def _serve_proxy(upstream: str, fault_rate: float, pipe: Any) -> None:
    """The proxy's process: serve until told to stop, then send back its counts."""
    proxy = _load_proxy()(upstream, hang_seconds=CLIENT_TIMEOUT + 0.3, fault_rate=fault_rate)
    with proxy.running():
        pipe.send(proxy.url)
        pipe.recv()
        pipe.send(dict(proxy.counts))


@contextmanager
def proxy_process(upstream: str, fault_rate: float = 0.0) -> Iterator[tuple[str, Counter[str]]]:
    """The proxy in a process of its own: (its URL, its counts once the block has ended)."""
    context = multiprocessing.get_context("spawn")
    pipe, child = context.Pipe()
    process = context.Process(target=_serve_proxy, args=(upstream, fault_rate, child))
    process.start()
    counts: Counter[str] = Counter()
    try:
        yield pipe.recv(), counts
    finally:
        pipe.send("stop")
        counts.update(pipe.recv())
        process.join(timeout=10)


class TimedApi(StripeApi):
    """The product's gateway, timing each PaymentIntent call per thread: wall time and the
    thread's CPU time (what our own work costs apart from waiting for Postgres and for
    a CPU on a busy machine)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.local = threading.local()

    def create_payment_intent(self, **kwargs: Any) -> Intent:
        start, cpu = time.perf_counter(), time.thread_time()
        try:
            return super().create_payment_intent(**kwargs)
        finally:
            self.local.stripe_seconds = time.perf_counter() - start
            self.local.stripe_cpu = time.thread_time() - cpu


def _fill(engine: sa.Engine, count: int) -> None:
    with engine.begin() as conn:
        sync_catalog(conn, load_catalog())
        conn.execute(sa.text(CONTRACT_DDL))
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_organizations (external_id, name, currency)"
                " select 'bench-' || g, 'Customer ' || g, 'USD' from generate_series(1, :n) g"
            ),
            {"n": count},
        )
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_subscriptions (external_id, organization_id,"
                " plan_id, billing_cycle, seats, billing_anchor, started_at)"
                " select 'sub-' || external_id, id, 'starter', 'monthly', 1, :d, :d"
                " from dictamesh_billing_organizations"
            ),
            {"d": BILLING_DAY},
        )
        conn.execute(
            sa.text(
                "insert into analytics.fct_invoices select 'sub-' || o.external_id || '/x', s.id,"
                " s.external_id, o.id, o.external_id, :d, :d, :e, 1, 'USD', 49.00, 0, 0, 0,"
                " 49.00, 0, 49.00, 0 from dictamesh_billing_organizations o"
                " join dictamesh_billing_subscriptions s on s.organization_id = o.id"
            ),
            {"d": BILLING_DAY, "e": BILLING_DAY + timedelta(days=30)},
        )
        conn.execute(
            sa.text(
                "insert into analytics.fct_invoice_line_items select invoice_key, 1,"
                " 'subscription_fee', 'Starter', null, 1, 49.00, 49.00, :d, :e, '[]', null"
                " from analytics.fct_invoices"
            ),
            {"d": BILLING_DAY, "e": BILLING_DAY + timedelta(days=30)},
        )
        finalize_window(
            conn, BILLING_DAY, BILLING_DAY + timedelta(days=1), prefix="INV-", due_days=30
        )


def _setup_cards(engine: sa.Engine, api_base: str, workers: int) -> None:
    gateway = StripeApi(DEMO_API_KEY, api_base=api_base)
    with engine.connect() as conn:
        org_ids = list(conn.scalars(sa.text("select id from dictamesh_billing_organizations")))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(
            pool.map(
                lambda o: add_payment_method(engine, gateway, o, payment_method_id="pm_card_visa"),
                org_ids,
            )
        )


def _baseline(proxy_url: str, count: int, rate: float, workers: int) -> float:
    api = StripeApi(DEMO_API_KEY, api_base=proxy_url, requests_per_second=rate)
    customer = api.client.v1.customers.create({"name": "baseline"}).id
    pm = api.attach_payment_method(api.payment_method("pm_card_visa").id, customer).id

    def call(n: int) -> None:
        api.client.v1.payment_intents.create(
            {
                "amount": 4900,
                "currency": "usd",
                "customer": customer,
                "payment_method": pm,
                "confirm": True,
                "off_session": True,
                "metadata": {"baseline": str(n)},
            }
        )

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        list(pool.map(call, range(count)))
    return count / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--invoices", type=int, default=2000)
    parser.add_argument("--rate", type=float, default=25.0)
    parser.add_argument("--workers", type=int, default=16)
    parser.add_argument("--fault-rate", type=float, default=0.10)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-payments-") as tmp, localstripe() as upstream:
        server = embedded_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        url = _psycopg_url(server.get_uri("postgres")).set(database="bench")
        ensure_database(url, "bench")
        engine = sa.create_engine(url, pool_size=args.workers + 2)
        migrate.upgrade(engine)
        _fill(engine, args.invoices)
        _setup_cards(engine, upstream, args.workers)

        with proxy_process(upstream) as (clean_url, _):
            baseline_rate = _baseline(clean_url, args.invoices, args.rate, args.workers)

        with proxy_process(upstream, args.fault_rate) as (proxy_url, counts):
            gateway = TimedApi(
                DEMO_API_KEY,
                api_base=proxy_url,
                timeout_seconds=CLIENT_TIMEOUT,
                requests_per_second=args.rate,
            )
            now = datetime.now(UTC)
            with engine.connect() as conn:
                due = invoices_to_charge(conn, now)
            own: list[float] = []
            own_cpu: list[float] = []

            def charge(invoice_id: int) -> str:
                gateway.local.stripe_seconds = gateway.local.stripe_cpu = 0.0
                start, cpu = time.perf_counter(), time.thread_time()
                outcome = charge_invoice(engine, gateway, invoice_id, now=now)
                own.append(time.perf_counter() - start - gateway.local.stripe_seconds)
                own_cpu.append(time.thread_time() - cpu - gateway.local.stripe_cpu)
                return outcome.status

            start = time.perf_counter()
            with ThreadPoolExecutor(max_workers=args.workers) as pool:
                statuses = Counter(pool.map(charge, due))
            seconds = time.perf_counter() - start
            sent = gateway.requests_sent
        faults = {k: v for k, v in counts.items() if k.startswith("fault:")}

        start = time.perf_counter()
        for _ in range(200):
            with engine.begin() as conn:
                conn.execute(sa.text("select 1"))
        round_trip_ms = 1000 * (time.perf_counter() - start) / 200

        per_invoice = Counter()
        listing = StripeApi(DEMO_API_KEY, api_base=upstream)
        for intent in listing._list({"limit": 100}):
            if "dmb_invoice_id" in intent.metadata:
                per_invoice[intent.metadata["dmb_invoice_id"]] += 1
        duplicates = sum(n - 1 for n in per_invoice.values() if n > 1)
        engine.dispose()
        server.cleanup()

    rate = len(due) / seconds
    request_rate = sent / seconds
    own_ms = 1000 * sum(own) / len(own)
    own_median_ms = 1000 * sorted(own)[len(own) // 2]
    own_cpu_ms = 1000 * sum(own_cpu) / len(own_cpu)
    print(f"invoices: {len(due)}, rate limit {args.rate:g} req/s, {args.workers} threads")
    print(f"outcomes: {dict(statuses)}; proxy faults {faults}, replayed {counts['replayed']}")
    print(
        f"{'Stripe requests, retries too':<28} {request_rate:8.2f} requests/s"
        f" ({sent} in {seconds:.1f} s)"
    )
    print(f"{'  ratio to the rate limit':<28} {request_rate / args.rate:8.3f}   (target >= 0.95)")
    print(f"{'charge run':<28} {rate:8.2f} invoices/s")
    print(
        f"{'  ratio to the rate limit':<28} {rate / args.rate:8.3f}"
        f"   (ceiling {len(due) / sent:.3f}: {sent / len(due):.3f} requests per invoice)"
    )
    print(f"{'baseline (bare SDK calls)':<28} {baseline_rate:8.2f} calls/s")
    print(f"{'  charge run / baseline':<28} {rate / baseline_rate:8.3f}")
    print(f"{'duplicate PaymentIntents':<28} {duplicates:8d}   (target 0)")
    print(f"{'own work per invoice':<28} {own_ms:8.2f} ms (target < 5 ms)")
    print(f"{'  median':<28} {own_median_ms:8.2f} ms")
    print(f"{'  CPU of our thread':<28} {own_cpu_ms:8.2f} ms")
    print(
        f"{'bare transaction (select 1)':<28} {round_trip_ms:8.2f} ms;"
        f" own work = {own_ms / round_trip_ms:.1f} bare transactions"
    )


if __name__ == "__main__":
    main()
