{{ config(tags=['billing_daily']) }}
-- DRAFTS: what the draft invoices (fct_invoices, rebuilt every run) would bill, before
-- discounts and tax, per plan, calendar month of the billing date, and currency, with
-- the USD equivalent. A forecast for review; issued revenue is fct_revenue_by_plan_month.
with lines as (
    select * from {{ ref('fct_invoice_line_items') }}
),

invoices as (
    select * from {{ ref('fct_invoices') }}
),

states as (
    select * from {{ ref('int_subscription_states') }}
),

billed as (
    select
        states.plan_id,
        date_trunc('month', invoices.billing_date, 'UTC') as month_start,
        invoices.currency,
        lines.kind,
        lines.amount
    from lines
    inner join invoices on lines.invoice_key = invoices.invoice_key
    -- the plan in effect on the billing date (the last one for a final invoice)
    inner join states
        on
            invoices.subscription_id = states.subscription_id
            and invoices.billing_date >= states.valid_from
            and (invoices.billing_date < states.valid_to or invoices.billing_date = states.valid_to)
),

final as (
    select
        billed.plan_id,
        (billed.month_start at time zone 'UTC')::date as month,
        billed.currency,
        sum(billed.amount) filter (where billed.kind in ('subscription_fee', 'seats', 'proration'))
        ::numeric(20, 6) as recurring_revenue,
        sum(billed.amount) filter (where billed.kind in ('overage', 'adjustment'))
        ::numeric(20, 6) as usage_revenue,
        sum(billed.amount)::numeric(20, 6) as revenue,
        round(sum(billed.amount) * max(rate.usd_per_unit), 6)::numeric(20, 6) as revenue_usd
    from billed
    {{ reporting_rate('billed.currency', 'billed.month_start') }}
    group by billed.plan_id, billed.month_start, billed.currency
)

select * from final
