-- Unpaid invoices (open or uncollectible) by how long past due they are, as of the
-- build: current (not yet due), 1-30, 31-60, 61-90, 90+ days.
with invoices as (
    select * from {{ ref('stg_billing__invoice_balances') }}
    where invoice_status in ('open', 'uncollectible') and amount_due > 0
),

aged as (
    select
        invoice_id,
        invoice_number,
        organization_id,
        currency,
        invoice_status,
        due_at,
        amount_due,
        current_timestamp as as_of,
        greatest(
            0, (current_timestamp at time zone 'UTC')::date - (due_at at time zone 'UTC')::date
        ) as days_past_due
    from invoices
),

final as (
    select
        invoice_id,
        invoice_number,
        organization_id,
        currency,
        invoice_status,
        due_at,
        as_of,
        days_past_due,
        amount_due,
        case
            when days_past_due = 0 then 'current'
            when days_past_due <= 30 then '1-30'
            when days_past_due <= 60 then '31-60'
            when days_past_due <= 90 then '61-90'
            else '90+'
        end as aging_bucket
    from aged
)

select * from final
