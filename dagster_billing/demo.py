"""`billing demo`: the whole pipeline on embedded defaults, for a fixed demo period.

Everything it writes is keyed (external ids, idempotency keys), so a second run finds
the rows in place and changes nothing.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from dagster_billing.catalog import load_catalog
from dagster_billing.catalog.sync import sync_catalog
from dagster_billing.finance.report import finance_summary
from dagster_billing.partitions import daily_partitions, partition_range_tags
from dagster_billing.settings import PROJECT_ROOT, Settings
from dagster_billing.warehouse import audit, migrate, schema
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


def _insert_new(conn: Connection, table: sa.Table, row: dict[str, Any]) -> bool:
    """Insert unless the row's unique key is taken; True when a row was created."""
    stmt = insert(table).values(**row).on_conflict_do_nothing().returning(table.c.id)
    return conn.execute(stmt).first() is not None


def _ensure_entity(
    conn: Connection, table: sa.Table, row: dict[str, Any], entity_type: str
) -> tuple[int, bool]:
    """Create an entity keyed by external id, auditing the creation; returns (id, created)."""
    created = _insert_new(conn, table, row)
    if created:
        audit.record(
            conn,
            actor="demo",
            action=f"{entity_type}.created",
            entity_type=entity_type,
            entity_id=row["external_id"],
            payload={k: str(v) for k, v in row.items() if k in ("plan_id", "seats", "currency")},
        )
    key = table.c.external_id == row["external_id"]
    return conn.execute(sa.select(table.c.id).where(key)).scalar_one(), created


def load_demo_data(conn: Connection) -> int:
    """Organizations, subscriptions, changes, a promotion and a credit; returns rows created."""
    created = 0
    org_ids: dict[str, int] = {}
    for org in DEMO_ORGANIZATIONS:
        org_ids[org["external_id"]], new = _ensure_entity(
            conn, schema.organizations, org, "organization"
        )
        created += new
    sub_ids: dict[str, int] = {}
    for sub in DEMO_SUBSCRIPTIONS:
        row = {k: v for k, v in sub.items() if k not in ("organization", "start")}
        row |= {
            "organization_id": org_ids[sub["organization"]],
            "billing_anchor": sub["start"],
            "started_at": sub["start"],
        }
        sub_ids[sub["external_id"]], new = _ensure_entity(
            conn, schema.subscriptions, row, "subscription"
        )
        created += new
    for change in DEMO_CHANGES:
        row = {k: v for k, v in change.items() if k != "subscription"}
        row["subscription_id"] = sub_ids[change["subscription"]]
        created += _insert_new(conn, schema.subscription_changes, row)
    created += _insert_new(
        conn,
        schema.promotions,
        {
            "organization_id": org_ids["vandelay"],
            "code": "WELCOME20",
            "position": 1,
            "percent_off": Decimal("20"),
            "duration_periods": 3,
        },
    )
    created += _insert_new(
        conn,
        schema.credits,
        {
            "organization_id": org_ids["acme"],
            "entry_type": "grant",
            "credit_type": "goodwill",
            "amount": Decimal("50"),
            "currency": "USD",
            "expires_at": _ts(31, 12),
            "description": "Onboarding goodwill credit",
            "idempotency_key": "demo-acme-goodwill",
        },
    )
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


def materialize_all(settings: Settings, env: dict[str, str], engine: Engine) -> list[str]:
    """Run every asset for the demo period, in a persistent instance so `make dev` shows
    the runs: the unpartitioned ones, then the daily ones as one run over the billing
    dates Oct 1 .. Nov 1 (what a single-run backfill does)."""
    from dagster_billing.assets.finance import finance_dbt_models, rerate_diff
    from dagster_billing.definitions import build_resources, defs

    os.environ.update(env)
    instance = dg.DagsterInstance.get()
    assets = [a for a in defs.assets or [] if isinstance(a, dg.AssetsDefinition)]
    run_config = {
        "ops": {"usage_partitions": {"config": {"as_of": DEMO_AS_OF.isoformat()}}},
        "loggers": {"console": {"config": {"log_level": "WARNING"}}},
    }
    resources = build_resources(settings)
    results = [
        dg.materialize(
            # finance reads the finalized invoices (last step); rerate_diff runs on request
            [
                a
                for a in assets
                if a.partitions_def is None and a not in (finance_dbt_models, rerate_diff)
            ],
            instance=instance,
            resources=resources,
            run_config=run_config,
            raise_on_error=True,
        )
    ]
    with engine.begin() as conn:
        load_demo_usage(conn)
    last_day = DEMO_AS_OF.date().isoformat()
    results.append(
        dg.materialize(
            [a for a in assets if a.partitions_def is daily_partitions],
            instance=instance,
            resources=resources,
            tags=partition_range_tags(DEMO_PERIOD_START.date().isoformat(), last_day),
            raise_on_error=True,
        )
    )
    # the finance marts read the invoices just finalized
    results.append(
        dg.materialize(
            [finance_dbt_models],
            instance=instance,
            resources=resources,
            raise_on_error=True,
        )
    )
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
    """The first README command: migrate, load catalog and demo data, run assets, summarize."""
    warehouse, engine = connect(settings)
    echo(f"warehouse ready: {warehouse.safe_url}")
    migrate.upgrade(engine)
    echo(f"schema at {migrate.current_revision(engine)}")
    with engine.begin() as conn:
        changed = sync_catalog(conn, load_catalog())
        echo(f"catalog: {sum(changed.values())} rows changed")
        created = load_demo_data(conn)
    echo(f"demo data: {created} new rows")
    materialized = materialize_all(settings, dagster_environment(warehouse, settings), engine)
    echo(f"materialized {len(materialized)} assets")
    for line in _summary(engine, warehouse):
        echo(line)
