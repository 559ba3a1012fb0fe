"""Invariants of finalized invoices, as queries that list what breaks them (empty = ok).

The asset checks run them over the whole table: a finalized invoice never changes, so a
violation anywhere is a bug to see, whichever day's partition produced it.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.invoicing.marts import DEFAULT_SCHEMA, relation

_TOTALS = sa.text(
    """
    with lines as (
        select invoice_id, sum(amount) as amount
        from dictamesh_billing_invoice_line_items group by invoice_id
    ), applied as (
        select invoice_id, -sum(amount) as amount
        from dictamesh_billing_credits where entry_type = 'application' group by invoice_id
    )
    select i.number,
           case
               when i.subtotal <> coalesce(l.amount, 0) then 'subtotal <> sum(lines)'
               when i.total <> greatest(i.subtotal - i.discount, 0) + i.tax
                   then 'total <> max(0, subtotal - discount) + tax'
               when i.amount_due <> i.total - i.credits_applied or i.amount_due < 0
                   then 'amount_due <> total - credits_applied, or negative'
               else 'credits_applied <> credit ledger applications'
           end as problem
    from dictamesh_billing_invoices i
    left join lines l on l.invoice_id = i.id
    left join applied a on a.invoice_id = i.id
    where i.status <> 'draft' and (
        i.subtotal <> coalesce(l.amount, 0)
        or i.total <> greatest(i.subtotal - i.discount, 0) + i.tax
        or i.amount_due <> i.total - i.credits_applied or i.amount_due < 0
        or i.credits_applied <> coalesce(a.amount, 0)
    )
    order by i.number
    """
)

_NUMBERS = sa.text(
    """
    with numbered as (
        select c.prefix, c.year, c.last_value,
               count(i.id) as issued,
               count(distinct i.number) as distinct_numbers,
               coalesce(max(substr(i.number, length(c.prefix) + 6)::integer), 0) as highest
        from dictamesh_billing_invoice_number_counters c
        left join dictamesh_billing_invoices i
            on left(i.number, length(c.prefix) + 5) = c.prefix || c.year::text || '-'
            and substr(i.number, length(c.prefix) + 6) ~ '^[0-9]+$'
        group by c.prefix, c.year, c.last_value
    )
    select prefix, year, last_value, issued, distinct_numbers, highest from numbered
    where issued <> last_value or distinct_numbers <> issued or highest <> last_value
    order by prefix, year
    """
)

_WITHOUT_PDF = sa.text(
    """
    select number from dictamesh_billing_invoices
    where status <> 'draft' and (pdf_path is null or pdf_sha256 is null)
    order by number
    """
)


def totals_problems(conn: Connection) -> list[str]:
    """Finalized invoices whose amounts do not add up."""
    return [f"{row.number}: {row.problem}" for row in conn.execute(_TOTALS)]


def numbering_problems(conn: Connection) -> list[str]:
    """Prefix-years whose numbers are not exactly 1..last_value, each once."""
    return [
        f"{row.prefix}{row.year}: counter at {row.last_value}, {row.issued} invoices, "
        f"{row.distinct_numbers} distinct numbers, highest {row.highest}"
        for row in conn.execute(_NUMBERS)
    ]


def invoices_without_pdf(conn: Connection) -> list[str]:
    return list(conn.scalars(_WITHOUT_PDF))


def needed_usage_hours(
    conn: Connection, start: datetime, end: datetime, schema: str = DEFAULT_SCHEMA
) -> dict[datetime, bool]:
    """Each UTC hour the unfinalized drafts billed in [start, end) bill usage for (their
    `usage_start`..`usage_end`, dbt's arrears periods), and whether the warehouse holds
    any sign it was ingested: an ingestion record or a usage row of that hour."""
    drafts = relation(schema, "fct_invoices")
    rows = conn.execute(
        sa.text(
            f"""
            with needed as (
                select distinct h as hour_start
                from {drafts} f
                cross join lateral generate_series(
                    date_trunc('hour', f.usage_start, 'UTC'),
                    f.usage_end - interval '1 microsecond',
                    interval '1 hour'
                ) as h
                where f.billing_date >= :start and f.billing_date < :end
                    and f.usage_start is not null
                    and not exists (
                        select 1 from dictamesh_billing_invoices i
                        where i.subscription_id = f.subscription_id
                            and i.period_start = f.period_start
                    )
            )
            select hour_start,
                exists (
                    select 1 from dictamesh_billing_usage_ingestions g
                    where g.hour_start = needed.hour_start
                ) or exists (
                    select 1 from dictamesh_billing_usage_metrics u
                    where u.hour_start = needed.hour_start
                ) as ingested
            from needed order by hour_start
            """
        ),
        {"start": start, "end": end},
    )
    return {row.hour_start: row.ingested for row in rows}
