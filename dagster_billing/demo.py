"""`billing demo`: the whole pipeline on embedded defaults, for a fixed demo period.

Everything it writes is keyed (external ids, idempotency keys), so a second run finds
the rows in place and changes nothing.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dagster_billing import customers
from dagster_billing.catalog import load_catalog
from dagster_billing.catalog.sync import sync_catalog
from dagster_billing.demo_output import Stages
from dagster_billing.finance.report import finance_summary
from dagster_billing.partitions import daily_partitions, partition_range_tags
from dagster_billing.settings import PROJECT_ROOT, Settings
from dagster_billing.warehouse import migrate, schema
from dagster_billing.warehouse.database import (
    DAGSTER_DATABASE,
    Warehouse,
    connect,
    ensure_database,
)
from dagster_billing.warehouse.partitions import ensure_partitions_for

DEMO_PERIOD_START = datetime(2026, 10, 1, tzinfo=UTC)
DEMO_AS_OF = datetime(2026, 11, 1, tzinfo=UTC)


def _ts(day: int, month: int = 10) -> datetime:
    return datetime(2026, month, day, tzinfo=UTC)


DEMO_ORGANIZATIONS: list[dict[str, Any]] = [
    {
        "external_id": "acme",
        "name": "Acme Corp",
        "email": "billing@acme.example",
        "currency": "USD",
        "locale": "en_US",
    },
    {
        "external_id": "globex",
        "name": "Globex GmbH",
        "email": "ap@globex.example",
        "currency": "EUR",
        "locale": "de_DE",
        "tax_rate": Decimal("0.19"),
    },
    {
        "external_id": "initech",
        "name": "Initech KK",
        "email": "keiri@initech.example",
        "currency": "JPY",
        "locale": "ja_JP",
    },
    {
        "external_id": "umbrella",
        "name": "Umbrella plc",
        "email": "finance@umbrella.example",
        "currency": "GBP",
        "locale": "en_GB",
        "tax_rate": Decimal("0.20"),
    },
    {
        "external_id": "vandelay",
        "name": "Vandelay Importação Ltda",
        "email": "financeiro@vandelay.example",
        "currency": "BRL",
        "locale": "pt_BR",
        "tax_exempt": True,
    },
]

DEMO_SUBSCRIPTIONS: list[dict[str, Any]] = [
    {
        "external_id": "sub-acme",
        "organization": "acme",
        "plan_id": "starter",
        "billing_cycle": "monthly",
        "seats": 5,
        "start": _ts(1),
    },
    {
        "external_id": "sub-globex",
        "organization": "globex",
        "plan_id": "professional",
        "billing_cycle": "annual",
        "seats": 12,
        "start": _ts(15),
    },
    {
        "external_id": "sub-initech",
        "organization": "initech",
        "plan_id": "free",
        "billing_cycle": "monthly",
        "seats": 1,
        "start": _ts(1),
    },
    {
        "external_id": "sub-umbrella",
        "organization": "umbrella",
        "plan_id": "enterprise",
        "billing_cycle": "monthly",
        "seats": 30,
        "start": _ts(1),
        "price_override": Decimal("2000"),
    },
    {
        "external_id": "sub-vandelay",
        "organization": "vandelay",
        "plan_id": "starter",
        "billing_cycle": "monthly",
        "seats": 3,
        "start": _ts(1),
    },
]

DEMO_CHANGES = [
    {"subscription": "sub-umbrella", "effective_at": _ts(16), "seats": 35},
    {"subscription": "sub-vandelay", "effective_at": _ts(16), "plan_id": "professional"},
]


def dagster_environment(warehouse: Warehouse, settings: Settings) -> dict[str, str]:
    """Environment for Dagster processes: instance storage in database `dagster` on the
    warehouse's server (its own database: Dagster keeps its own alembic_version), unless
    DAGSTER_PG_URL names another; and the warehouse passed on by DSN so run workers join
    it instead of starting their own."""
    env = {
        "DAGSTER_HOME": str(PROJECT_ROOT / "dagster_home"),
        "BILLING_DATABASE_DSN": warehouse.libpq_url(),
    }
    if settings.dagster_pg_url is None:
        ensure_database(warehouse.url, DAGSTER_DATABASE)
        env["DAGSTER_PG_URL"] = warehouse.libpq_url(DAGSTER_DATABASE, driver="postgresql+psycopg2")
    return env


def _exists(conn: Connection, table: sa.Table, **where: Any) -> bool:
    query = sa.select(sa.func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    return bool(conn.scalar(query))


def load_demo_data(conn: Connection) -> int:
    """Organizations, subscriptions, changes, a promotion and a credit, written through the
    customers write path (audited, with events); returns the entities created."""
    created = 0
    for org in DEMO_ORGANIZATIONS:
        if not _exists(conn, schema.organizations, external_id=org["external_id"]):
            customers.create_organization(conn, **org, actor="demo")
            created += 1
    for sub in DEMO_SUBSCRIPTIONS:
        if not _exists(conn, schema.subscriptions, external_id=sub["external_id"]):
            customers.create_subscription(
                conn,
                organization=sub["organization"],
                plan=sub["plan_id"],
                seats=sub["seats"],
                billing_cycle=sub["billing_cycle"],
                start=sub["start"],
                price_override=sub.get("price_override"),
                external_id=sub["external_id"],
                actor="demo",
            )
            created += 1
    for change in DEMO_CHANGES:
        sub_id = conn.scalar(
            sa.select(schema.subscriptions.c.id).where(
                schema.subscriptions.c.external_id == change["subscription"]
            )
        )
        if not _exists(
            conn,
            schema.subscription_changes,
            subscription_id=sub_id,
            effective_at=change["effective_at"],
        ):
            customers.change_subscription(
                conn,
                change["subscription"],
                plan=change.get("plan_id"),
                seats=change.get("seats"),
                effective_at=change["effective_at"],
                actor="demo",
            )
            created += 1
    if not _exists(conn, schema.promotions, code="WELCOME20"):
        customers.add_promotion(
            conn,
            "vandelay",
            code="WELCOME20",
            percent_off=Decimal("20"),
            duration_periods=3,
            actor="demo",
        )
        created += 1
    if not _exists(conn, schema.credits, idempotency_key="demo-acme-goodwill"):
        customers.grant_credit(
            conn,
            "acme",
            amount=Decimal("50"),
            credit_type="goodwill",
            expires_at=_ts(31, 12),
            description="Onboarding goodwill credit",
            idempotency_key="demo-acme-goodwill",
            actor="demo",
        )
        created += 1
    return created


# Hourly usage per organization for the demo month: (metric, quantity per hour). Chosen so
# the invoices show overage (acme: API calls, storage, queries; umbrella: API calls),
# a free plan over its quota that is not billed (initech), and a plan change (vandelay).
DEMO_USAGE: dict[str, list[tuple[str, Decimal]]] = {
    "acme": [
        ("api_calls", Decimal("2000")),
        ("storage", Decimal("60")),
        ("transfer", Decimal("0.1")),
        ("query_processing", Decimal("1.5")),
    ],
    "globex": [("api_calls", Decimal("20000")), ("storage", Decimal("420"))],
    "initech": [("api_calls", Decimal("20")), ("storage", Decimal("0.5"))],
    "umbrella": [("api_calls", Decimal("150000")), ("transfer", Decimal("12.5"))],
    "vandelay": [("api_calls", Decimal("1500")), ("storage", Decimal("80"))],
}


def load_demo_usage(conn: Connection) -> int:
    """October's hourly usage, keyed by organization+metric+hour, so a rerun adds nothing."""
    ensure_partitions_for(conn, DEMO_PERIOD_START, DEMO_AS_OF)
    created = 0
    for org, series in DEMO_USAGE.items():
        for metric, per_hour in series:
            created += conn.execute(
                sa.text(
                    "insert into dictamesh_billing_usage_metrics"
                    " (organization_id, metric, hour_start, quantity, source, idempotency_key)"
                    " select o.id, :metric, h, :quantity, 'api',"
                    "   'demo/' || o.external_id || '/' || :metric || '/' || h::text"
                    " from dictamesh_billing_organizations o,"
                    "   generate_series(:start, :end - interval '1 hour', interval '1 hour') h"
                    " where o.external_id = :org"
                    " on conflict do nothing"
                ),
                {
                    "org": org,
                    "metric": metric,
                    "quantity": per_hour,
                    "start": DEMO_PERIOD_START,
                    "end": DEMO_AS_OF,
                },
            ).rowcount
    return created


def materialize_all(
    settings: Settings, env: dict[str, str], engine: Engine, stage: Stages | None = None
) -> list[str]:
    """Run every asset for the demo period, in a persistent instance so `make dev` shows
    the runs: the unpartitioned ones, then the daily ones as one run over the billing
    dates Oct 1 .. Nov 1 (what a single-run backfill does)."""
    from dagster_billing.assets.finance import finance_dbt_models, rerate_diff

    stages = stage or Stages(echo=lambda _: None, log_path=None)
    with stages.stage("definitions") as done:  # importing them warns (beta parameters)
        from dagster_billing.definitions import build_resources, defs

        done(f"{len(defs.assets or [])} assets")
    os.environ.update(env)
    instance = dg.DagsterInstance.get()
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    run_config = {"ops": {"usage_partitions": {"config": {"as_of": DEMO_AS_OF.isoformat()}}}}
    resources = build_resources(settings)
    # finance reads the finalized invoices (its own stage below); rerate_diff runs on request
    unpartitioned = [
        a for a in assets if a.partitions_def is None and a not in (finance_dbt_models, rerate_diff)
    ]
    with stages.stage("unpartitioned assets", steps=len(unpartitioned)) as done:
        results = [
            dg.materialize(
                unpartitioned,
                instance=instance,
                resources=resources,
                run_config=run_config,
                raise_on_error=True,
            )
        ]
        done(f"{len(results[0].get_asset_materialization_events())} materializations")
    with stages.stage("October usage") as done, engine.begin() as conn:
        done(f"{load_demo_usage(conn)} new hourly rows")
    last_day = DEMO_AS_OF.date().isoformat()
    daily = [a for a in assets if a.partitions_def is daily_partitions]
    with stages.stage(
        f"daily assets {DEMO_PERIOD_START.date()} .. {last_day}", steps=len(daily)
    ) as done:
        results.append(
            dg.materialize(
                daily,
                instance=instance,
                resources=resources,
                tags=partition_range_tags(DEMO_PERIOD_START.date().isoformat(), last_day),
                raise_on_error=True,
            )
        )
        done(f"{len(results[1].get_asset_materialization_events())} materializations")
    with stages.stage("finance marts", steps=1) as done:
        results.append(
            dg.materialize(
                [finance_dbt_models], instance=instance, resources=resources, raise_on_error=True
            )
        )
        done(f"{len(results[2].get_asset_materialization_events())} materializations")
    return sorted(
        {
            e.asset_key.to_user_string()
            for result in results
            for e in result.get_asset_materialization_events()
            if e.asset_key is not None
        }
    )


def _invoice_table(conn: Connection) -> list[str]:
    """Draft invoices of the demo period with their lines, as finance would skim them."""
    lines = ["draft invoices (analytics.fct_invoices):"]
    invoices = conn.execute(
        sa.text(
            "select invoice_key, currency, subtotal, discount, tax, total, credits_applied,"
            " amount_due from analytics.fct_invoices order by invoice_key"
        )
    ).all()
    for inv in invoices:
        lines.append(
            f"  {inv.invoice_key:<36} {inv.currency} subtotal {inv.subtotal:.2f}"
            f"  discount {inv.discount:.2f}  tax {inv.tax:.2f}  total {inv.total:.2f}"
            f"  credits {inv.credits_applied:.2f}  due {inv.amount_due:.2f}"
        )
        for line in conn.execute(
            sa.text(
                "select kind, description, quantity, amount from analytics.fct_invoice_line_items"
                " where invoice_key = :key order by line_number"
            ),
            {"key": inv.invoice_key},
        ):
            lines.append(
                f"      {line.kind:<17} {line.description[:40]:<40}"
                f" {line.quantity.normalize():>14f} {line.amount:>12.2f}"
            )
    lines.append("finalized invoices (dictamesh_billing_invoices):")
    for inv in conn.execute(
        sa.text(
            "select i.number, o.external_id, i.status, i.currency, i.total, i.amount_due,"
            " i.pdf_path from dictamesh_billing_invoices i"
            " join dictamesh_billing_organizations o on o.id = i.organization_id"
            " where i.number is not null order by i.number"
        )
    ):
        lines.append(
            f"  {inv.number}  {inv.external_id:<10} {inv.status:<6} {inv.currency}"
            f" total {inv.total:>10.2f}  due {inv.amount_due:>10.2f}  {inv.pdf_path or 'no PDF'}"
        )
    lines.append("MRR (analytics.fct_mrr, USD):")
    for row in conn.execute(
        sa.text(
            "select o.external_id, m.month, m.currency, m.mrr, m.mrr_usd, m.movement"
            " from analytics.fct_mrr m join dictamesh_billing_organizations o"
            " on o.id = m.organization_id order by m.month, o.external_id"
        )
    ):
        lines.append(
            f"  {row.month}  {row.external_id:<10} {row.currency} {row.mrr:>12.2f}"
            f"  USD {row.mrr_usd:>10.2f}  {row.movement}"
        )
    return lines


def _summary(engine: Engine, warehouse: Warehouse) -> list[str]:
    from dagster_billing.warehouse.audit import verify_chain
    from dagster_billing.warehouse.partitions import existing_partitions

    with engine.connect() as conn:
        counts = {
            t.name.removeprefix("dictamesh_billing_"): conn.scalar(
                sa.select(sa.func.count()).select_from(t)
            )
            for t in (
                schema.subscription_plans,
                schema.price_books,
                schema.pricing_tiers,
                schema.organizations,
                schema.subscriptions,
                schema.subscription_changes,
                schema.credits,
            )
        }
        partitions = existing_partitions(conn)
        chain = verify_chain(conn)
        staged = conn.scalar(
            sa.text("select count(*) from analytics_staging.stg_billing__price_books")
        )
    lines = [
        f"warehouse: {warehouse.safe_url} ({'embedded' if warehouse.embedded else 'configured'})"
    ]
    lines.append("rows: " + ", ".join(f"{name} {count}" for name, count in counts.items()))
    lines.append(
        f"usage partitions: {len(partitions)} daily ({min(partitions)} .. {max(partitions)})"
    )
    lines.append(f"dbt staging: stg_billing__price_books has {staged} rows")
    lines.append(f"audit log: {chain.rows} rows, chain {'intact' if chain.ok else 'BROKEN'}")
    with engine.connect() as conn:
        lines.extend(_invoice_table(conn))
        lines.extend(finance_summary(conn))
    return lines


def run_demo(settings: Settings, echo: Callable[[str], None] = print) -> None:
    """The first README command: migrate, load catalog and demo data, run assets, summarize.

    One line per stage reaches the console (with a progress bar on a terminal); the
    Dagster events, dbt's node lines and library warnings go to a log file whose path is
    printed first. A failing stage prints its error and the log's last lines."""
    log_path = settings.billing_data_dir / "logs" / f"demo-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.log"
    stages = Stages(echo=echo, log_path=log_path)
    echo(f"full log: {log_path}")
    with stages.stage("warehouse") as done:
        warehouse, engine = connect(settings)
        done(f"ready: {warehouse.safe_url}")
    with stages.stage("schema") as done:
        migrate.upgrade(engine)
        done(f"at {migrate.current_revision(engine)}")
    with stages.stage("catalog") as done, engine.begin() as conn:
        changed = sync_catalog(conn, load_catalog())
        done(f"{sum(changed.values())} rows changed")
    with stages.stage("demo data") as done, engine.begin() as conn:
        done(f"{load_demo_data(conn)} new rows")
    materialized = materialize_all(
        settings, dagster_environment(warehouse, settings), engine, stages
    )
    with stages.stage("payments") as done:
        from dagster_billing.payments.demo import pay_demo_invoices

        paid: list[str] = []
        pay_demo_invoices(engine, paid.append)
        done("; ".join(paid))
    with stages.stage("events and notifications") as done:
        done("; ".join(publish_and_notify(settings)))
    echo(f"materialized {len(materialized)} assets; all stages took {stages.total:.1f} s")
    for line in _summary(engine, warehouse):
        echo(line)
    for line in _api_lines(engine, settings):
        echo(line)
    echo(
        "metrics: `billing metrics serve` serves http://127.0.0.1:9109/metrics"
        " (`billing api` also on /metrics); dashboard and alert rules in deploy/"
    )


def demo_api_key(engine: Engine, settings: Settings) -> str:
    """The demo's admin key: created once and kept (mode 0600) in the embedded data
    directory, so a second demo run prints it again instead of minting another."""
    from dagster_billing.api.keys import authenticate, create_key

    path = settings.billing_data_dir / "demo-api-key"
    if path.is_file():
        token = path.read_text().strip()
        with engine.begin() as conn:
            if authenticate(conn, token) is not None:
                return token
    with engine.begin() as conn:
        token, _ = create_key(conn, role="admin", actor="demo", name="demo admin")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600)
    path.write_text(token + "\n")
    return token


def _api_lines(engine: Engine, settings: Settings) -> list[str]:
    token = demo_api_key(engine, settings)
    base = "http://127.0.0.1:8000/api/v1/billing"
    auth = f'-H "Authorization: Bearer {token}"'
    return [
        f"admin API key (demo only; kept in {settings.billing_data_dir}/demo-api-key): {token}",
        "serve the API with `.venv/bin/billing api`, then:",
        f"  curl -s {auth} {base}/organizations/acme",
        f"  curl -s {auth} '{base}/invoices?organization=acme&limit=5'",
    ]


@contextmanager
def _demo_broker(settings: Settings) -> Iterator[str | None]:
    """KAFKA_BOOTSTRAP_SERVERS when set; else a throw-away in-memory Tansu broker when
    `tansu` is on PATH (stopped afterwards); else None."""
    if settings.kafka_bootstrap_servers:
        yield settings.kafka_bootstrap_servers
        return
    tansu = shutil.which("tansu")
    if tansu is None:
        yield None
        return
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    listener = f"tcp://127.0.0.1:{port}"
    broker = subprocess.Popen(
        [
            tansu,
            "broker",
            f"--listener-url={listener}",
            f"--advertised-listener-url={listener}",
            "--storage-engine=memory://tansu/",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        broker.terminate()
        try:
            broker.wait(timeout=10)
        except subprocess.TimeoutExpired:
            broker.kill()
            broker.wait()


def publish_and_notify(settings: Settings) -> list[str]:
    """The demo's events to Kafka (when there is a broker) and its emails (to SMTP_HOST, or
    as .eml files under the data directory), through the same assets Dagster runs."""
    from dagster_billing.assets.events import billing_events_published, billing_notifications_sent
    from dagster_billing.definitions import build_resources
    from dagster_billing.resources.kafka import KafkaResource

    lines = []
    with _demo_broker(settings) as bootstrap:
        resources = build_resources(settings)
        if bootstrap:
            resources["kafka"] = KafkaResource(
                bootstrap_servers=bootstrap, topic=settings.kafka_events_topic
            )
        result = dg.materialize(
            [billing_events_published, billing_notifications_sent],
            instance=dg.DagsterInstance.get(),
            resources=resources,
            raise_on_error=True,
        )
        meta = {
            e.asset_key.to_user_string(): e.materialization.metadata
            for e in result.get_asset_materialization_events()
            if e.asset_key is not None
        }
    events = meta["billing_events_published"]
    if bootstrap:
        temporary = "" if settings.kafka_bootstrap_servers else " (a temporary tansu broker)"
        lines.append(
            f"events: {events['published'].value} published now to"
            f" {settings.kafka_events_topic} at {bootstrap}{temporary},"
            f" {events['pending'].value} waiting in the outbox"
        )
    else:
        lines.append(
            f"events: no Kafka broker (set KAFKA_BOOTSTRAP_SERVERS): {events['pending'].value}"
            " stay in the outbox"
        )
    sent = meta["billing_notifications_sent"]
    where = (
        f"via {settings.smtp_host}"
        if settings.smtp_host
        else f"as .eml files in {settings.billing_data_dir / 'outbox-mail'}"
    )
    lines.append(f"notifications: {sent['sent'].value} sent {where}, {sent['failed'].value} failed")
    return lines
