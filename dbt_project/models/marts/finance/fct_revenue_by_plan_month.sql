{{ config(tags=['finance']) }}
-- Issued revenue (finalized invoice lines, before discounts and tax) per plan, calendar
-- month and currency, booked as a ledger: a line counts in the month its invoice was
-- issued, and a voided invoice's lines count again, negated, in the month of the void.
-- A closed month never changes when an invoice is voided later. USD at the reporting
-- rate of the month (never used to bill).
with issued as (
    select * from {{ ref('fct_issued_invoice_lines') }}
),

entries as (
    select
        plan_id,
        date_trunc('month', issued_at, 'UTC') as month_start,
        currency,
        is_usage,
        amount,
        0 as voided_amount
    from issued
    union all
    select
        plan_id,
        date_trunc('month', voided_at, 'UTC') as month_start,
        currency,
        is_usage,
        -amount as amount,
        -amount as voided_amount
    from issued
    where voided_at is not null
),

final as (
    select
        entries.plan_id,
        (entries.month_start at time zone 'UTC')::date as month,
        entries.currency,
        coalesce(sum(entries.amount) filter (where not entries.is_usage), 0)
        ::numeric(20, 6) as recurring_revenue,
        coalesce(sum(entries.amount) filter (where entries.is_usage), 0)
        ::numeric(20, 6) as usage_revenue,
        sum(entries.voided_amount)::numeric(20, 6) as voided_revenue,
        sum(entries.amount)::numeric(20, 6) as revenue,
        round(sum(entries.amount) * max(rate.usd_per_unit), 6)::numeric(20, 6) as revenue_usd
    from entries
    {{ reporting_rate('entries.currency', 'entries.month_start') }}
    group by entries.plan_id, entries.month_start, entries.currency
)

select * from final
