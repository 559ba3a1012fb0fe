"""`billing simulate`: bill a scenario with the production dbt models, in isolation.

The scenario is loaded into a fresh schema `billing_sim_<id>` beside the production
tables: catalog rows are copied from the warehouse (what production would charge), the
scenario's organizations, subscriptions and usage are inserted, and dbt runs the same
invoice models with `billing_source_schema` pointing there and its own target schemas.
Production tables are only read (the catalog), and every schema is dropped afterwards.
"""

from __future__ import annotations

import json
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dagster_billing.dbt_project import DbtRunError, parsed_manifest, run_dbt
from dagster_billing.rating.scenario import Catalog, Scenario, parse_scenario
from dagster_billing.resources.rating import RatingResource, window_options
from dagster_billing.resources.warehouse import dbt_env
from dagster_billing.settings import ConfigError, Settings
from dagster_billing.warehouse.database import Warehouse

# Catalog tables are copied into a simulation; every other table dbt reads starts empty.
CATALOG_TABLES = (
    "dictamesh_billing_currencies",
    "dictamesh_billing_metrics",
    "dictamesh_billing_subscription_plans",
    "dictamesh_billing_plan_quotas",
    "dictamesh_billing_price_books",
    "dictamesh_billing_pricing_tiers",
    "dictamesh_billing_fx_rates",
)
INVOICE_MODELS = ("fct_invoices", "fct_invoice_line_items", "fct_invoice_credit_applications")


class SimulationError(RuntimeError):
    """dbt failed on a scenario that passed validation: a bug, reported with dbt's output."""


def read_catalog(conn: Connection, schema: str = "public") -> Catalog:
    """The names a scenario may use, from the warehouse's catalog tables."""
    price_books = f"{schema}.dictamesh_billing_price_books"
    if conn.scalar(sa.text(f"select to_regclass('{price_books}')")) is None:
        raise ConfigError(
            "warehouse: no catalog yet; run `billing db upgrade` and `billing catalog sync`"
        )
    plans = conn.execute(
        sa.text(
            f"select id, seats_sellable, included_seats"
            f" from {schema}.dictamesh_billing_subscription_plans where active"
        )
    ).all()
    metrics = conn.scalars(sa.text(f"select id from {schema}.dictamesh_billing_metrics")).all()
    currencies = conn.scalars(
        sa.text(f"select distinct currency from {schema}.dictamesh_billing_price_books")
    ).all()
    return Catalog(
        plans=frozenset(p.id for p in plans),
        metrics=frozenset(metrics),
        currencies=frozenset(c.strip() for c in currencies),
        plans_selling_seats=frozenset(p.id for p in plans if p.seats_sellable),
        included_seats={p.id: p.included_seats for p in plans},
    )


def source_tables() -> list[str]:
    """Every warehouse table the dbt sources read, from the manifest (so none is missed)."""
    return sorted({source.identifier for source in parsed_manifest().sources.values()})


@contextmanager
def isolated_schema(engine: Engine) -> Iterator[str]:
    """A new schema holding empty copies of the source tables and the catalog's rows;
    it and the schemas dbt builds from it are dropped on the way out, whatever happens."""
    schema = f"billing_sim_{uuid.uuid4().hex[:12]}"
    try:
        with engine.begin() as conn:
            conn.execute(sa.text(f"create schema {schema}"))
            for table in source_tables():
                conn.execute(
                    sa.text(
                        f"create table {schema}.{table}"
                        f" (like public.{table} including defaults including identity"
                        f" including constraints)"
                    )
                )
            for table in CATALOG_TABLES:
                conn.execute(sa.text(f"insert into {schema}.{table} select * from public.{table}"))
        yield schema
    finally:
        with engine.begin() as conn:
            for suffix in ("", "_staging", "_intermediate"):
                conn.execute(sa.text(f"drop schema if exists {schema}{suffix} cascade"))


def load_scenario(conn: Connection, schema: str, scenario: Scenario) -> None:
    """Insert the scenario as the operational tables would hold it."""
    org_ids: dict[str, int] = {}
    for org in scenario.organizations:
        org_ids[org.id] = conn.execute(
            sa.text(
                f"insert into {schema}.dictamesh_billing_organizations"
                " (external_id, name, currency, tax_rate, tax_exempt)"
                " values (:id, :name, :currency, :tax_rate, :tax_exempt) returning id"
            ),
            vars(org),
        ).scalar_one()
        # a zero discount changes nothing, and the table only holds real ones
        promotions = [p for p in org.promotions if p[0] or p[1]]
        for position, (percent, amount, duration) in enumerate(promotions, start=1):
            conn.execute(
                sa.text(
                    f"insert into {schema}.dictamesh_billing_promotions (organization_id, code,"
                    " position, percent_off, amount_off, duration_periods)"
                    " values (:org, :code, :position, :percent, :amount, :duration)"
                ),
                {
                    "org": org_ids[org.id],
                    "code": f"promotion-{position}",
                    "position": position,
                    "percent": percent,
                    "amount": amount,
                    "duration": duration,
                },
            )
        for number, (amount, expires_at) in enumerate(org.credits, start=1):
            if amount == 0:
                continue
            conn.execute(
                sa.text(
                    f"insert into {schema}.dictamesh_billing_credits (organization_id,"
                    " entry_type, credit_type, amount, currency, expires_at, idempotency_key)"
                    " values (:org, 'grant', 'prepaid', :amount, :currency, :expires_at, :key)"
                ),
                {
                    "org": org_ids[org.id],
                    "amount": amount,
                    "currency": org.currency,
                    "expires_at": expires_at,
                    "key": f"scenario/{org.id}/credit-{number}",
                },
            )
    for sub in scenario.subscriptions:
        sub_id = conn.execute(
            sa.text(
                f"insert into {schema}.dictamesh_billing_subscriptions (external_id,"
                " organization_id, plan_id, billing_cycle, seats, pricing_mode, price_override,"
                " billing_anchor, started_at, cancel_at)"
                " values (:id, :org, :plan, :cycle, :seats, :mode, :override, :start, :start,"
                " :cancel_at) returning id"
            ),
            {
                "id": sub.id,
                "org": org_ids[sub.organization],
                "plan": sub.plan,
                "cycle": sub.cycle,
                "seats": sub.seats,
                "mode": sub.pricing_mode,
                "override": sub.price_override,
                "start": sub.start,
                "cancel_at": sub.cancel_at,
            },
        ).scalar_one()
        if sub.changes:
            conn.execute(
                sa.text(
                    f"insert into {schema}.dictamesh_billing_subscription_changes"
                    " (subscription_id, effective_at, plan_id, seats)"
                    " values (:sub, :at, :plan, :seats)"
                ),
                [
                    {"sub": sub_id, "at": c.at, "plan": c.plan, "seats": c.seats}
                    for c in sub.changes
                ],
            )
    if scenario.usage:
        conn.execute(
            sa.text(
                f"insert into {schema}.dictamesh_billing_usage_metrics"
                " (organization_id, metric, hour_start, quantity, source)"
                " values (:org, :metric, :hour, :quantity, 'api')"
            ),
            [
                {"org": org_ids[org], "metric": metric, "hour": hour, "quantity": quantity}
                for (org, metric, hour), quantity in scenario.usage.items()
            ],
        )


def run_invoice_models(
    warehouse: Warehouse,
    schema: str,
    settings: Settings,
    as_of: datetime,
    models: tuple[str, ...] = INVOICE_MODELS,
) -> None:
    """dbt run of the invoice marts and what they depend on, billing dates <= as_of, in
    the scenario's schema: the runner the Dagster step uses (dbt_project.run_dbt)."""
    dbt_vars = RatingResource.from_settings(settings).dbt_vars()
    env = {
        **dbt_env(warehouse, schema),
        **window_options(datetime(1970, 1, 1, tzinfo=UTC), as_of + timedelta(microseconds=1)),
    }
    args = [
        "run",
        "--quiet",
        "--select",
        *(f"+{model}" for model in models),
        "--vars",
        json.dumps(dbt_vars),
    ]
    with tempfile.TemporaryDirectory(prefix="billing-sim-dbt-") as target:
        try:
            for _ in run_dbt(args, env=env, target=Path(target), source_schema=schema):
                pass
        except DbtRunError as exc:
            raise SimulationError(f"dbt run failed on the scenario: {exc}") from None


def _money(value: Decimal, minor_units: int) -> str:
    return format(value.quantize(Decimal(1).scaleb(-minor_units)), "f")


def _six(value: Decimal) -> str:
    return format(value.quantize(Decimal("0.000001")), "f")


def _plain(value: Decimal) -> str:
    """Quantities print without padding zeros: "2456.789", "1"."""
    text = format(value.normalize(), "f")
    return "0" if text in ("-0", "0") else text


def collect_invoices(conn: Connection, schema: str) -> list[dict[str, Any]]:
    """The invoices dbt built, in the `--json` shape of docs/scenario-format.md."""
    minor = dict(
        conn.execute(
            sa.text(f"select code, minor_units from {schema}.dictamesh_billing_currencies")
        ).all()
    )
    invoices = conn.execute(
        sa.text(
            f"select * from {schema}.fct_invoices order by subscription_external_id, billing_date"
        )
    ).mappings()
    lines: dict[str, list[dict[str, Any]]] = {}
    for line in conn.execute(
        sa.text(f"select * from {schema}.fct_invoice_line_items order by invoice_key, line_number")
    ).mappings():
        lines.setdefault(line["invoice_key"], []).append(dict(line))
    out = []
    for invoice in invoices:
        units = minor[invoice["currency"]]
        rendered = []
        for line in lines.get(invoice["invoice_key"], []):
            item = {"kind": line["kind"], "description": line["description"]}
            if line["metric"] is not None:
                item["metric"] = line["metric"]
            # a proration's quantity is its fraction, to the 6 decimals it was rounded to
            quantity = line["quantity"]
            item["quantity"] = _six(quantity) if line["kind"] == "proration" else _plain(quantity)
            if line["kind"] != "overage" and line["unit_amount"] is not None:
                item["unit_amount"] = _six(line["unit_amount"])
            item["amount"] = _money(line["amount"], units)
            if line["tier_detail"]:
                item["tiers"] = line["tier_detail"]
            rendered.append(item)
        out.append(
            {
                "subscription": invoice["subscription_external_id"],
                "organization": invoice["organization_external_id"],
                "billing_date": invoice["billing_date"]
                .astimezone(UTC)
                .strftime("%Y-%m-%dT%H:%M:%SZ"),
                "currency": invoice["currency"],
                "lines": rendered,
                **{
                    key: _money(invoice[key], units)
                    for key in (
                        "subtotal",
                        "discount",
                        "tax",
                        "total",
                        "credits_applied",
                        "amount_due",
                    )
                },
            }
        )
    return out


def simulate(engine: Engine, warehouse: Warehouse, settings: Settings, scenario: Scenario) -> dict:
    """Bill the scenario in an isolated schema and return `{"invoices": [...]}`."""
    with isolated_schema(engine) as schema:
        with engine.begin() as conn:
            load_scenario(conn, schema, scenario)
        run_invoice_models(warehouse, schema, settings, scenario.as_of)
        with engine.connect() as conn:
            return {"invoices": collect_invoices(conn, schema)}


def bill(engine: Engine, warehouse: Warehouse, settings: Settings, raw: Any) -> dict:
    """Validate a scenario (parsed YAML) against the warehouse's catalog, then bill it;
    ScenarioError names the first bad field."""
    with engine.connect() as conn:
        scenario = parse_scenario(raw, read_catalog(conn))
    return simulate(engine, warehouse, settings, scenario)


def render_table(result: dict[str, Any]) -> str:
    """A readable invoice listing for people (`--json` is for programs)."""
    blocks = []
    for invoice in result["invoices"]:
        head = (
            f"{invoice['subscription']} ({invoice['organization']})"
            f"  billing date {invoice['billing_date']}  {invoice['currency']}"
        )
        rows = [
            f"  {line['kind']:<17} {line['description'][:42]:<42} {line['quantity']:>16}"
            f" {line['amount']:>14}"
            for line in invoice["lines"]
        ]
        totals = [
            f"  {label:<77} {invoice[key]:>14}"
            for label, key in (
                ("Subtotal", "subtotal"),
                ("Discount", "discount"),
                ("Tax", "tax"),
                ("Total", "total"),
                ("Credits applied", "credits_applied"),
                ("Amount due", "amount_due"),
            )
        ]
        blocks.append("\n".join([head, *rows, *totals]))
    return "\n\n".join(blocks) if blocks else "no invoices up to as_of"


def load_yaml(path: Path) -> Any:
    import yaml

    try:
        return yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {str(exc).splitlines()[0]}") from None
