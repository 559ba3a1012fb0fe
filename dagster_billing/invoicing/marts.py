"""Read draft invoices from the rating marts, exactly the columns of docs/invoice-marts.md."""

from __future__ import annotations

import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.invoicing import InvoicingError

DEFAULT_SCHEMA = "analytics"

# The contract's three relations as plain tables, for tests and benchmarks that stand in
# for dbt (the real ones are dbt models in `dbt_project/models/marts/`).
CONTRACT_DDL = """
create schema if not exists analytics;
create table analytics.fct_invoices (
    invoice_key text, subscription_id bigint, subscription_external_id text,
    organization_id bigint, organization_external_id text, billing_date timestamptz,
    period_start timestamptz, period_end timestamptz, invoice_sequence integer,
    currency char(3), subtotal numeric, discount numeric, tax_rate numeric, tax numeric,
    total numeric, credits_applied numeric, amount_due numeric, balance_credit numeric,
    usage_start timestamptz, usage_end timestamptz
);
create table analytics.fct_invoice_line_items (
    invoice_key text, line_number integer, kind text, description text, metric text,
    quantity numeric, unit_amount numeric, amount numeric, period_start timestamptz,
    period_end timestamptz, tier_detail jsonb, adjusts_invoice_key text
);
create table analytics.fct_invoice_credit_applications (
    invoice_key text, credit_id bigint, amount numeric, balance_invoice_key text
);
"""


@dataclass(frozen=True)
class DraftLine:
    line_number: int
    kind: str
    description: str
    metric: str | None
    quantity: Decimal
    unit_amount: Decimal | None
    amount: Decimal
    period_start: datetime | None
    period_end: datetime | None
    tier_detail: str  # JSON text, copied verbatim: parsing 12 lines x 1,000s costs more
    adjusts_invoice_key: str | None


@dataclass(frozen=True)
class DraftCredit:
    """A credit dbt decided this invoice uses: a ledger grant, or (credit_id None) the
    balance credit of the draft `balance_invoice_key` from the same rating run."""

    credit_id: int | None
    amount: Decimal
    balance_invoice_key: str | None = None


@dataclass(frozen=True)
class DraftInvoice:
    invoice_key: str
    subscription_id: int
    subscription_external_id: str
    organization_id: int
    organization_external_id: str
    billing_date: datetime
    period_start: datetime
    period_end: datetime
    invoice_sequence: int
    currency: str
    subtotal: Decimal
    discount: Decimal
    tax_rate: Decimal
    tax: Decimal
    total: Decimal
    credits_applied: Decimal
    amount_due: Decimal
    balance_credit: Decimal
    lines: tuple[DraftLine, ...]
    credits: tuple[DraftCredit, ...]

    def validate(self) -> None:
        """Refuse a draft whose sums disagree: a sent invoice must add up on paper."""
        where = f"fct_invoices[{self.invoice_key}]"
        lines = sum((line.amount for line in self.lines), Decimal(0))
        if lines != self.subtotal:
            raise InvoicingError(f"{where}.subtotal: {self.subtotal} != sum of lines {lines}")
        expected_total = max(Decimal(0), self.subtotal - self.discount) + self.tax
        if self.total != expected_total:
            raise InvoicingError(
                f"{where}.total: {self.total} != max(0, subtotal - discount) + tax "
                f"= {expected_total}"
            )
        credits = sum((credit.amount for credit in self.credits), Decimal(0))
        if credits != self.credits_applied:
            raise InvoicingError(
                f"{where}.credits_applied: {self.credits_applied} != sum of "
                f"fct_invoice_credit_applications {credits}"
            )
        if self.amount_due != self.total - self.credits_applied or self.amount_due < 0:
            raise InvoicingError(
                f"{where}.amount_due: {self.amount_due} != total - credits_applied "
                f"= {self.total - self.credits_applied} (and must be >= 0)"
            )


def relation(schema: str, name: str) -> str:
    """A dbt relation's quoted name; the schema comes from settings, so it is checked."""
    if not re.fullmatch(r"[a-z_][a-z0-9_]*", schema):
        raise InvoicingError(f"dbt_schema: must be a plain lowercase identifier, got {schema!r}")
    return f'"{schema}"."{name}"'


_INVOICE_COLUMNS = (
    "invoice_key, subscription_id, subscription_external_id, organization_id, "
    "organization_external_id, billing_date, period_start, period_end, invoice_sequence, "
    "currency, subtotal, discount, tax_rate, tax, total, credits_applied, amount_due, "
    "balance_credit"
)
_LINE_COLUMNS = (
    "invoice_key, line_number, kind, description, metric, quantity, unit_amount, amount, "
    "period_start, period_end, coalesce(tier_detail, '[]')::text, adjusts_invoice_key"
)


def _load(conn: Connection, schema: str, where: str, params: dict[str, Any]) -> list[DraftInvoice]:
    invoices = relation(schema, "fct_invoices")
    keys = f"select f.invoice_key from {invoices} f where {where}"
    lines: dict[str, list[DraftLine]] = defaultdict(list)
    for key, *values in conn.execute(
        sa.text(
            f"select {_LINE_COLUMNS} from {relation(schema, 'fct_invoice_line_items')} "
            f"where invoice_key in ({keys}) order by invoice_key, line_number"
        ),
        params,
    ).all():
        lines[key].append(DraftLine(*values))
    credits: dict[str, list[DraftCredit]] = defaultdict(list)
    for row in conn.execute(
        sa.text(
            "select invoice_key, credit_id, amount, balance_invoice_key from "
            f"{relation(schema, 'fct_invoice_credit_applications')} "
            f"where invoice_key in ({keys}) order by invoice_key, credit_id nulls last, amount"
        ),
        params,
    ).all():
        credits[row.invoice_key].append(
            DraftCredit(row.credit_id, row.amount, row.balance_invoice_key)
        )
    drafts = []
    for row in (
        conn.execute(
            sa.text(
                f"select {_INVOICE_COLUMNS} from {invoices} f where {where} "
                "order by billing_date, invoice_key"
            ),
            params,
        )
        .mappings()
        .all()
    ):
        key = row["invoice_key"]
        drafts.append(
            DraftInvoice(
                **{**row, "currency": row["currency"].strip()},
                lines=tuple(lines.get(key, ())),
                credits=tuple(credits.get(key, ())),
            )
        )
    return drafts


def load_drafts(
    conn: Connection, start: datetime, end: datetime, schema: str = DEFAULT_SCHEMA
) -> list[DraftInvoice]:
    """Drafts whose billing date falls in the half-open window [start, end)."""
    return _load(
        conn,
        schema,
        "f.billing_date >= :start and f.billing_date < :end",
        {"start": start, "end": end},
    )


def preview_invoice(
    conn: Connection, organization_external_id: str, schema: str = DEFAULT_SCHEMA
) -> DraftInvoice | None:
    """The organization's next draft not finalized yet: what its upcoming invoice will say."""
    next_draft = (
        f"f.invoice_key = (select n.invoice_key from {relation(schema, 'fct_invoices')} n "
        "where n.organization_external_id = :org and not exists (select 1 from "
        "dictamesh_billing_invoices i where i.subscription_id = n.subscription_id "
        "and i.period_start = n.period_start) order by n.billing_date, n.invoice_key limit 1)"
    )
    found = _load(conn, schema, next_draft, {"org": organization_external_id})
    return found[0] if found else None
