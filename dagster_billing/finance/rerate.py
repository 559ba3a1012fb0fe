"""`billing rerate`: rate a window again under a corrected catalog and diff it with what
was issued; `--apply` turns the differences into adjustment lines on the next invoices.

The window's organizations, subscriptions, changes, promotions and usage are copied into
`billing simulate`'s throw-away schema (rating/simulate.py: isolated_schema), whose
catalog is replaced by the corrected one, and the same invoice models run there. The
issued invoices with a billing date in [from, to) are compared line by line (kind,
metric, description) with the re-rated ones. What was billed for a line counts the
usage corrections and earlier price corrections that adjusted it, so a correction is
never applied twice. Applying writes one row per differing line to
`dictamesh_billing_rerate_adjustments` (unique per invoice and description, which names
the catalog version), audit-logged, in one transaction; rating carries each row on the
subscription's next unfinalized invoice (int_invoice_lines_rerate). Production tables are
only read until `--apply`.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from dagster_billing.catalog import Catalog
from dagster_billing.catalog.sync import sync_catalog
from dagster_billing.rating import simulate as sim
from dagster_billing.settings import ConfigError, Settings
from dagster_billing.warehouse import audit
from dagster_billing.warehouse import schema as tables
from dagster_billing.warehouse.database import Warehouse
from dagster_billing.warehouse.schema import rerate_adjustments

# Usage before a billing date that its invoice rates: an arrears period is at most a month.
USAGE_LOOKBACK = timedelta(days=32)
# Rows copied per organization, in foreign-key order (keyed by organization_id or through
# its subscriptions); invoices are not copied, or rating would leave their periods alone.
ORGANIZATION_TABLES = ("organizations", "subscriptions", "subscription_changes", "promotions")
CORRECTION_PREFIX = "Price correction"
# one rerate applies at a time (pg_advisory_xact_lock key)
APPLY_LOCK = 16_0001


class RerateError(ValueError):
    """Bad input, phrased as `field: what is wrong`."""


@dataclass(frozen=True)
class LineDiff:
    kind: str
    metric: str | None
    description: str
    old: Decimal
    new: Decimal
    period_start: datetime | None
    period_end: datetime | None

    @property
    def difference(self) -> Decimal:
        return self.new - self.old


@dataclass
class InvoiceDiff:
    invoice_id: int
    number: str
    invoice_key: str
    organization: str
    organization_id: int
    subscription_id: int
    currency: str
    minor_units: int
    billing_date: datetime
    totals: dict[str, tuple[Decimal, Decimal]]
    lines: list[LineDiff] = field(default_factory=list)


@dataclass
class RerateDiff:
    catalog_version: str
    window_start: datetime
    window_end: datetime
    organization: str | None
    invoices: list[InvoiceDiff]
    # corrections already in the warehouse when the diff was made (apply checks it)
    known_corrections: int = 0

    def as_json(self) -> dict[str, Any]:
        def money(value: Decimal, units: int) -> str:
            return format(value.quantize(Decimal(1).scaleb(-units)), "f")

        return {
            "catalog_version": self.catalog_version,
            "from": self.window_start.isoformat(),
            "to": self.window_end.isoformat(),
            "organization": self.organization,
            "invoices": [
                {
                    "invoice": inv.number,
                    "invoice_key": inv.invoice_key,
                    "organization": inv.organization,
                    "currency": inv.currency,
                    "billing_date": inv.billing_date.astimezone(UTC).isoformat(),
                    "lines": [
                        {
                            "kind": line.kind,
                            "metric": line.metric,
                            "description": line.description,
                            "old": money(line.old, inv.minor_units),
                            "new": money(line.new, inv.minor_units),
                            "difference": money(line.difference, inv.minor_units),
                        }
                        for line in inv.lines
                    ],
                    "totals": {
                        key: {
                            "old": money(old, inv.minor_units),
                            "new": money(new, inv.minor_units),
                        }
                        for key, (old, new) in inv.totals.items()
                    },
                    "adjustment": money(
                        sum((line.difference for line in inv.lines), Decimal(0)), inv.minor_units
                    ),
                }
                for inv in self.invoices
            ],
        }


def parse_day(value: str, name: str) -> datetime:
    """A UTC instant from `YYYY-MM-DD` (midnight) or an ISO-8601 instant."""
    try:
        if len(value) == 10:
            return datetime.combine(date.fromisoformat(value), datetime.min.time(), UTC)
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise RerateError(f"{name}: not a date (YYYY-MM-DD), got {value!r}") from None
    if parsed.tzinfo is None:
        raise RerateError(f"{name}: needs a time zone (e.g. Z), got {value!r}")
    return parsed.astimezone(UTC)


def check_window(start: datetime, end: datetime) -> None:
    if end <= start:
        raise RerateError(f"--to: must be after --from ({start.date()}), got {end.date()}")


def _organization_id(conn: Connection, organization: str | None) -> int | None:
    if organization is None:
        return None
    found = conn.scalar(
        sa.text("select id from dictamesh_billing_organizations where external_id = :org"),
        {"org": organization},
    )
    if found is None:
        raise RerateError(f"--org: no organization {organization!r}")
    return found


def _install_catalog(conn: Connection, schema: str, catalog: Catalog) -> None:
    """Replace the schema's catalog rows (copied from production) with `catalog`'s,
    keeping rows an operator edited, as `billing catalog sync` would."""
    for table in reversed(sim.CATALOG_TABLES):
        has_source = conn.scalar(
            sa.text(
                "select count(*) from information_schema.columns where table_schema = :s"
                " and table_name = :t and column_name = 'source'"
            ),
            {"s": schema, "t": table},
        )
        where = " where source is distinct from 'operator'" if has_source else ""
        conn.execute(sa.text(f"delete from {schema}.{table}{where}"))
        # the throw-away copies have no keys, and the sync upserts on them
        keys = ", ".join(c.name for c in tables.metadata.tables[table].primary_key.columns)
        conn.execute(sa.text(f"alter table {schema}.{table} add primary key ({keys})"))
    conn.execute(sa.text(f"set local search_path to {schema}"))
    sync_catalog(conn, catalog)
    conn.execute(sa.text("set local search_path to public"))


def _copy_window(
    conn: Connection, schema: str, org_id: int | None, start: datetime, end: datetime
) -> None:
    """The operational rows the window's invoices are rated from, ids kept, so re-rated
    invoices carry the issued ones' keys."""
    orgs = "true" if org_id is None else f"organization_id = {int(org_id)}"
    subs = f"subscription_id in (select id from {schema}.dictamesh_billing_subscriptions)"
    where = {
        "organizations": "true" if org_id is None else f"id = {int(org_id)}",
        "subscriptions": orgs,
        "subscription_changes": subs,
        "promotions": orgs,
    }
    for table in ORGANIZATION_TABLES:
        conn.execute(
            sa.text(
                f"insert into {schema}.dictamesh_billing_{table} overriding system value"
                f" select * from public.dictamesh_billing_{table} where {where[table]}"
            )
        )
    conn.execute(
        sa.text(
            f"insert into {schema}.dictamesh_billing_usage_metrics"
            " select * from public.dictamesh_billing_usage_metrics"
            f" where hour_start >= :start and hour_start < :end and {orgs}"
        ),
        {"start": start - USAGE_LOOKBACK, "end": end},
    )


LineKey = tuple[str, str | None, str]


def _rerated(conn: Connection, schema: str, start: datetime, end: datetime) -> dict[str, Any]:
    """Re-rated invoices with a billing date in [start, end): key -> (totals, lines)."""
    out: dict[str, Any] = {}
    for inv in conn.execute(
        sa.text(
            f"select * from {schema}.fct_invoices where billing_date >= :start"
            " and billing_date < :end"
        ),
        {"start": start, "end": end},
    ).mappings():
        out[inv["invoice_key"]] = {"invoice": dict(inv), "lines": {}}
    for line in conn.execute(
        sa.text(
            f"select * from {schema}.fct_invoice_line_items where billing_date >= :start"
            " and billing_date < :end and kind <> 'adjustment'"
        ),
        {"start": start, "end": end},
    ).mappings():
        lines = out[line["invoice_key"]]["lines"]
        key = (line["kind"], line["metric"], line["description"])
        amount, _, _ = lines.get(key, (Decimal(0), None, None))
        lines[key] = (amount + line["amount"], line["period_start"], line["period_end"])
    return out


def _issued(
    conn: Connection, org_id: int | None, start: datetime, end: datetime
) -> tuple[list[dict[str, Any]], dict[int, dict[LineKey, list[Any]]], int]:
    """Issued (not void) invoices of the window, what was billed per line (the line, usage
    corrections and price corrections adjusting it), and how many corrections exist."""
    invoices = [
        dict(row)
        for row in conn.execute(
            sa.text(
                "select i.*, o.external_id as organization, c.minor_units"
                " from dictamesh_billing_invoices i"
                " join dictamesh_billing_organizations o on o.id = i.organization_id"
                " join dictamesh_billing_currencies c on c.code = i.currency"
                " where i.status in ('open', 'paid', 'uncollectible')"
                " and i.period_start >= :start and i.period_start < :end"
                " and (cast(:org as bigint) is null or i.organization_id = :org)"
                " order by i.period_start, i.number"
            ),
            {"start": start, "end": end, "org": org_id},
        ).mappings()
    ]
    ids = [inv["id"] for inv in invoices] or [0]
    # invoice id -> line key -> [amount billed, period start, period end]
    billed: dict[int, dict[LineKey, list[Any]]] = defaultdict(dict)

    def add(invoice_id: int, key: LineKey, amount: Decimal, start: Any = None, end: Any = None):
        entry = billed[invoice_id].setdefault(key, [Decimal(0), start, end])
        entry[0] += amount

    params = {"ids": ids}
    for line in conn.execute(
        sa.text(
            "select invoice_id, kind, metric, description, amount, period_start, period_end"
            " from dictamesh_billing_invoice_line_items"
            " where invoice_id = any(:ids) and kind <> 'adjustment'"
        ),
        params,
    ).mappings():
        add(
            line["invoice_id"],
            (line["kind"], line["metric"], line["description"]),
            line["amount"],
            line["period_start"],
            line["period_end"],
        )
    # usage corrections finalized on later invoices count as billed overage
    overage = {
        (inv_id, key[1]): key
        for inv_id, lines in billed.items()
        for key in lines
        if key[0] == "overage"
    }
    for line in conn.execute(
        sa.text(
            "select l.adjusts_invoice_id, l.metric, l.amount"
            " from dictamesh_billing_invoice_line_items l"
            " join dictamesh_billing_invoices i on i.id = l.invoice_id"
            " where l.adjusts_invoice_id = any(:ids) and l.kind = 'adjustment'"
            " and i.status <> 'draft' and l.description not like :prefix"
        ),
        {**params, "prefix": f"{CORRECTION_PREFIX}%"},
    ).mappings():
        key = overage.get((line["adjusts_invoice_id"], line["metric"]))
        add(line["adjusts_invoice_id"], key or ("overage", line["metric"], ""), line["amount"])
    corrections = conn.execute(
        sa.select(rerate_adjustments).where(rerate_adjustments.c.corrected_invoice_id.in_(ids))
    ).mappings()
    count = 0
    for row in corrections:
        count += 1
        add(
            row["corrected_invoice_id"],
            (row["kind"], row["metric"], row["line_description"]),
            row["amount"],
        )
    return invoices, billed, count


def diff(
    engine: Engine,
    warehouse: Warehouse,
    settings: Settings,
    catalog: Catalog,
    start: datetime,
    end: datetime,
    organization: str | None = None,
) -> RerateDiff:
    """Rate [start, end) under `catalog` in a throw-away schema and compare with what
    was issued; nothing in production changes."""
    check_window(start, end)
    with engine.connect() as conn:
        org_id = _organization_id(conn, organization)
        sim.read_catalog(conn)  # a warehouse without a catalog fails with one line
    with sim.isolated_schema(engine) as schema:
        with engine.begin() as conn:
            _install_catalog(conn, schema, catalog)
            _copy_window(conn, schema, org_id, start, end)
        sim.run_invoice_models(warehouse, schema, settings, end - timedelta(microseconds=1))
        with engine.connect() as conn:
            rerated = _rerated(conn, schema, start, end)
    with engine.connect() as conn:
        invoices, billed, known = _issued(conn, org_id, start, end)
    result = RerateDiff(catalog.version, start, end, organization, [], known)
    for inv in invoices:
        new = rerated.get(inv["invoice_key"], {"invoice": {}, "lines": {}})
        old_lines = billed.get(inv["id"], {})
        lines = []
        keys = sorted(set(old_lines) | set(new["lines"]), key=lambda k: (k[0], k[1] or "", k[2]))
        for key in keys:
            old_amount, *old_period = old_lines.get(key, (Decimal(0), None, None))
            new_amount, *new_period = new["lines"].get(key, (Decimal(0), None, None))
            if old_amount != new_amount:
                period = new_period if new_period[0] else old_period
                lines.append(LineDiff(*key, old_amount, new_amount, *period))
        if not lines:
            continue
        result.invoices.append(
            InvoiceDiff(
                invoice_id=inv["id"],
                number=inv["number"],
                invoice_key=inv["invoice_key"],
                organization=inv["organization"],
                organization_id=inv["organization_id"],
                subscription_id=inv["subscription_id"],
                currency=inv["currency"],
                minor_units=inv["minor_units"],
                billing_date=inv["period_start"],
                totals={
                    key: (inv[key], new["invoice"].get(key, Decimal(0)))
                    for key in ("subtotal", "discount", "tax", "total")
                },
                lines=lines,
            )
        )
    return result


def correction_description(version: str, line: LineDiff, number: str) -> str:
    return f"{CORRECTION_PREFIX} (catalog {version}): {line.description} ({number})"


@dataclass(frozen=True)
class ApplyResult:
    applied: int
    already_applied: int


def apply(conn: Connection, result: RerateDiff, *, actor: str) -> ApplyResult:
    """Write each line difference as a correction for the next invoice, audit-logged, in
    the caller's transaction. A correction already written (same invoice, line and
    catalog version) is skipped; a rerate applied since the diff was made stops this one."""
    conn.execute(sa.text("select pg_advisory_xact_lock(:key)"), {"key": APPLY_LOCK})
    ids = [inv.invoice_id for inv in result.invoices] or [0]
    now_known = conn.scalar(
        sa.select(sa.func.count())
        .select_from(rerate_adjustments)
        .where(rerate_adjustments.c.corrected_invoice_id.in_(ids))
    )
    if now_known != result.known_corrections and result.invoices:
        raise RerateError("--apply: another rerate was applied since this diff; run it again")
    applied = skipped = 0
    for inv in result.invoices:
        for line in inv.lines:
            description = correction_description(result.catalog_version, line, inv.number)
            row = {
                "organization_id": inv.organization_id,
                "subscription_id": inv.subscription_id,
                "corrected_invoice_id": inv.invoice_id,
                "kind": line.kind,
                "metric": line.metric,
                "line_description": line.description,
                "period_start": line.period_start,
                "period_end": line.period_end,
                "description": description,
                "amount": line.difference,
                "currency": inv.currency,
                "catalog_version": result.catalog_version,
                "window_start": result.window_start,
                "window_end": result.window_end,
                "created_by": actor,
            }
            created = conn.execute(
                insert(rerate_adjustments)
                .values(**row)
                .on_conflict_do_nothing()
                .returning(rerate_adjustments.c.id)
            ).scalar()
            if created is None:
                skipped += 1
                continue
            applied += 1
            audit.record(
                conn,
                actor=actor,
                action="invoice.rerated",
                entity_type="invoice",
                entity_id=inv.number,
                payload={
                    "rerate_adjustment_id": created,
                    "catalog_version": result.catalog_version,
                    "line": line.description,
                    "old": str(line.old),
                    "new": str(line.new),
                    "amount": str(line.difference),
                    "currency": inv.currency,
                },
            )
    return ApplyResult(applied, skipped)


def render_table(result: RerateDiff) -> str:
    """The diff for people: per invoice, the lines that change and the totals."""
    data = result.as_json()
    head = (
        f"re-rating {data['from'][:10]} .. {data['to'][:10]} (exclusive) under catalog"
        f" {data['catalog_version']}"
        + (f", organization {data['organization']}" if data["organization"] else "")
    )
    if not data["invoices"]:
        return f"{head}\nno differences: the issued invoices match the catalog"
    blocks = [head]
    for inv in data["invoices"]:
        rows = [
            f"{inv['invoice']}  {inv['organization']}  {inv['currency']}"
            f"  billing date {inv['billing_date'][:10]}",
            f"  {'line':<44} {'old':>12} {'new':>12} {'difference':>12}",
        ]
        for line in inv["lines"]:
            rows.append(
                f"  {line['description'][:44]:<44} {line['old']:>12} {line['new']:>12}"
                f" {line['difference']:>12}"
            )
        for key, pair in inv["totals"].items():
            rows.append(f"  {key.capitalize():<44} {pair['old']:>12} {pair['new']:>12}")
        rows.append(f"  adjustment for the next invoice: {inv['adjustment']} {inv['currency']}")
        blocks.append("\n".join(rows))
    return "\n\n".join(blocks)


def load_corrected_catalog(path: Any) -> Catalog:
    """The corrected catalog file; CatalogError names the bad field."""
    from dagster_billing.catalog import load_catalog

    if not path.exists():
        raise ConfigError(f"--catalog: no file {path}")
    return load_catalog(path)
