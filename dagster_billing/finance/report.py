"""The finance summary `billing demo` prints: MRR movements and revenue recognition."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Connection


def finance_summary(conn: Connection, schema: str = "analytics") -> list[str]:
    """MRR movements on their effective dates, then recognized revenue and the deferred
    balance per month and currency."""
    lines = [f"MRR movements ({schema}.fct_mrr_movements):"]
    for row in conn.execute(
        sa.text(
            "select o.external_id, m.effective_at, m.movement_type, m.currency, m.amount,"
            f" m.amount_usd, m.mrr from {schema}.fct_mrr_movements m"
            " join dictamesh_billing_organizations o on o.id = m.organization_id"
            " order by m.effective_at, o.external_id"
        )
    ):
        lines.append(
            f"  {row.effective_at:%Y-%m-%d %H:%M}  {row.external_id:<10} {row.movement_type:<12}"
            f" {row.currency} {row.amount:>+12.2f}  USD {row.amount_usd:>+10.2f}"
            f"  MRR {row.mrr:>10.2f}"
        )
    lines.append(f"revenue recognition ({schema}.fct_deferred_revenue):")
    for row in conn.execute(
        sa.text(
            "select month, currency, recognized_revenue, recognized_usage, deferred_balance"
            f" from {schema}.fct_deferred_revenue"
            " where month <= (select max(date_trunc('month', issued_at))::date"
            f"   from {schema}.fct_issued_invoice_lines)"
            " order by month, currency"
        )
    ):
        lines.append(
            f"  {row.month}  {row.currency} recognized {row.recognized_revenue:>12.2f}"
            f" (usage {row.recognized_usage:>8.2f})  deferred {row.deferred_balance:>12.2f}"
        )
    return lines
