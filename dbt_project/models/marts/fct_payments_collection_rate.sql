-- Per issue month and currency: what was billed (amount due of finalized, non-void
-- invoices), what has been collected on those invoices (payments received, before
-- refunds), and the ratio. An invoice paid later counts for the month it was issued.
with invoices as (
    select * from {{ ref('stg_billing__invoice_balances') }}
    where invoice_status <> 'void' and amount_due > 0
),

ledger as (
    select * from {{ ref('stg_billing__payment_ledger') }}
    where entry_type = 'payment'
),

collected as (
    select
        invoice_id,
        sum(amount) as amount
    from ledger
    group by invoice_id
),

monthly as (
    select
        invoices.currency,
        date_trunc('month', invoices.issued_at, 'UTC') as month_start,
        count(*) as invoices,
        count(*) filter (where invoices.invoice_status = 'paid') as invoices_paid,
        sum(invoices.amount_due) as amount_due,
        coalesce(sum(collected.amount), 0) as amount_collected
    from invoices
    left join collected on invoices.invoice_id = collected.invoice_id
    group by invoices.currency, date_trunc('month', invoices.issued_at, 'UTC')
),

final as (
    select
        (month_start at time zone 'UTC')::date as month,
        currency,
        invoices,
        invoices_paid,
        amount_due::numeric(20, 6) as amount_due,
        amount_collected::numeric(20, 6) as amount_collected,
        round(amount_collected / amount_due, 6)::numeric(9, 6) as collection_rate
    from monthly
)

select * from final
