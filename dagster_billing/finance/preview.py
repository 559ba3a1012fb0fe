"""Small Markdown previews of a mart, for Dagster materialization metadata."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

# what each revenue mart's preview shows first: the latest months, the biggest lines
PREVIEW_ORDER = {
    "fct_revenue_by_plan_month": "month desc, currency, plan_id",
    "fct_deferred_revenue": "month desc, currency",
    "fct_revenue_recognition": "month desc, invoice_number, line_number",
    "fct_issued_invoice_lines": "issued_at desc, invoice_number, line_number",
    "fct_mrr_movements": "effective_at desc, organization_id",
    "fct_mrr": "month desc, organization_id",
}


def _cell(value: Any) -> str:
    if isinstance(value, Decimal):
        return format(value.normalize(), "f")
    return "" if value is None else str(value).replace("|", "\\|")


def markdown_table(columns: list[str], rows: list[tuple[Any, ...]]) -> str:
    """A Markdown table the Dagster UI renders; money as exact decimals."""
    head = "| " + " | ".join(columns) + " |\n|" + "---|" * len(columns)
    body = ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join([head, *body])


def preview(conn: Connection, schema: str, mart: str, limit: int = 10) -> str:
    """The first `limit` rows of a mart in PREVIEW_ORDER, as Markdown."""
    order = PREVIEW_ORDER.get(mart, "1")
    result = conn.execute(
        sa.text(f'select * from "{schema}"."{mart}" order by {order} limit :limit'),
        {"limit": limit},
    )
    return markdown_table(list(result.keys()), [tuple(r) for r in result])
