"""Load a catalog into the warehouse idempotently.

Rows are upserted on their natural keys and only touched when a value differs, so a
second sync changes nothing. Price-book and tier rows an operator has replaced
(`source = 'operator'`) are left alone.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from dagster_billing.catalog import Catalog
from dagster_billing.warehouse import schema


def _upsert(conn: Connection, table: sa.Table, rows: Sequence[dict[str, Any]]) -> int:
    """Insert or update `rows`; returns how many rows actually changed."""
    if not rows:
        return 0
    keys = [c.name for c in table.primary_key.columns]
    values = [c for c in rows[0] if c not in keys]
    stmt = insert(table).values(list(rows))
    changed = sa.or_(*(table.c[c].is_distinct_from(stmt.excluded[c]) for c in values))
    if "source" in table.c:
        changed = sa.and_(table.c.source == "catalog", changed)
    update = {c: stmt.excluded[c] for c in values}
    if "updated_at" in table.c:
        update["updated_at"] = sa.func.now()
    stmt = stmt.on_conflict_do_update(index_elements=keys, set_=update, where=changed)
    return len(conn.execute(stmt.returning(*table.primary_key.columns)).all())


def catalog_rows(catalog: Catalog) -> dict[sa.Table, list[dict[str, Any]]]:
    """Every warehouse row the catalog defines, in foreign-key order."""
    v = catalog.version
    rows: dict[sa.Table, list[dict[str, Any]]] = {
        schema.currencies: [
            {
                "code": c.code,
                "minor_units": c.minor_units,
                "catalog_factor": c.factor,
                "catalog_version": v,
            }
            for c in catalog.currencies
        ],
        schema.metrics: [
            {
                "id": m.id,
                "display_name": m.name,
                "unit": m.unit,
                "unit_size": m.unit_size,
                "aggregation": m.aggregation,
                "catalog_version": v,
            }
            for m in catalog.metrics
        ],
        schema.subscription_plans: [
            {
                "id": p.id,
                "name": p.name,
                "included_seats": p.included_seats,
                "seats_sellable": p.seat_price_monthly is not None,
                "max_adapters": p.max_adapters,
                "bills_overage": p.bills_overage,
                "sort_order": i,
                "catalog_version": v,
            }
            for i, p in enumerate(catalog.plans, start=1)
        ],
        schema.plan_quotas: [
            {"plan_id": p.id, "metric": metric, "included_quantity": quantity, "catalog_version": v}
            for p in catalog.plans
            for metric, quantity in p.quotas.items()
        ],
        schema.price_books: [
            {
                "plan_id": p.id,
                "currency": c.code,
                "monthly_fee": catalog.price(p.monthly_fee, c),
                "annual_fee": catalog.price(p.annual_fee, c),
                "seat_price_monthly": None
                if p.seat_price_monthly is None
                else catalog.price(p.seat_price_monthly, c),
                "catalog_version": v,
            }
            for p in catalog.plans
            for c in catalog.currencies
        ],
        schema.pricing_tiers: [],
        schema.fx_rates: [
            {
                "currency": code,
                "valid_from": date.fromisoformat(catalog.reporting_fx.valid_from),
                "usd_per_unit": rate,
                "source": f"catalog {v}",
            }
            for code, rate in catalog.reporting_fx.usd_per_unit.items()
        ],
    }
    for metric, tiers in catalog.tiers.items():
        for c in catalog.currencies:
            lower = 0
            for number, tier in enumerate(tiers, start=1):
                rows[schema.pricing_tiers].append(
                    {
                        "metric": metric,
                        "currency": c.code,
                        "tier": number,
                        "lower_bound": lower,
                        "upper_bound": tier.up_to,
                        "unit_price": catalog.price(tier.unit_price, c),
                        "catalog_version": v,
                    }
                )
                lower = tier.up_to
    return rows


def sync_catalog(conn: Connection, catalog: Catalog) -> dict[str, int]:
    """Upsert the whole catalog in the caller's transaction; returns changed rows per table."""
    return {table.name: _upsert(conn, table, rows) for table, rows in catalog_rows(catalog).items()}
