-- Draft invoices, one per subscription and billing date in [window_start, window_end):
-- totals after promotions and tax, then credits (docs/invoice-marts.md).
with totals as (
    select * from {{ ref('int_invoice_totals') }}
),

applications as (
    select * from {{ ref('int_invoice_credit_applications') }}
),

applied as (
    select
        invoice_key,
        sum(amount) as credits_applied
    from applications
    group by invoice_key
),

final as (
    select
        totals.invoice_key,
        totals.subscription_id,
        totals.subscription_external_id,
        totals.organization_id,
        totals.organization_external_id,
        totals.billing_date,
        totals.period_start,
        totals.period_end,
        totals.invoice_sequence,
        totals.usage_start,
        totals.usage_end,
        totals.currency,
        totals.subtotal,
        totals.discount,
        totals.tax_rate,
        totals.tax,
        totals.total,
        coalesce(applied.credits_applied, 0)::numeric(20, 6) as credits_applied,
        (totals.total - coalesce(applied.credits_applied, 0))::numeric(20, 6) as amount_due,
        totals.balance_credit
    from totals
    left join applied on totals.invoice_key = applied.invoice_key
)

select * from final
