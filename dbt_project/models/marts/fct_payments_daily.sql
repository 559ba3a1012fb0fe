-- Money in and out per UTC day and currency, from the payment ledger: payments received,
-- refunds paid out, and the net.
with ledger as (
    select * from {{ ref('stg_billing__payment_ledger') }}
),

daily as (
    select
        currency,
        (occurred_at at time zone 'UTC')::date as payment_date,
        count(*) filter (where entry_type = 'payment') as payments,
        coalesce(sum(amount) filter (where entry_type = 'payment'), 0) as payments_amount,
        count(*) filter (where entry_type = 'refund') as refunds,
        coalesce(-sum(amount) filter (where entry_type = 'refund'), 0) as refunds_amount,
        sum(amount) as net_amount
    from ledger
    group by currency, (occurred_at at time zone 'UTC')::date
),

final as (
    select
        payment_date,
        currency,
        payments,
        refunds,
        payments_amount::numeric(20, 6) as payments_amount,
        refunds_amount::numeric(20, 6) as refunds_amount,
        net_amount::numeric(20, 6) as net_amount
    from daily
)

select * from final
