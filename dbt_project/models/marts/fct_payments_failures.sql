-- Failed charge attempts per month, currency, failure code and decline code: what
-- dunning is fighting.
with payments as (
    select * from {{ ref('stg_billing__payments') }}
    where payment_status = 'failed' and provider = 'stripe'
),

final as (
    select
        currency,
        failure_code,
        (date_trunc('month', attempted_at, 'UTC') at time zone 'UTC')::date as month,
        coalesce(decline_code, '') as decline_code,
        count(*) as attempts,
        count(distinct invoice_id) as invoices,
        sum(amount)::numeric(20, 6) as amount
    from payments
    group by
        currency,
        failure_code,
        coalesce(decline_code, ''),
        (date_trunc('month', attempted_at, 'UTC') at time zone 'UTC')::date
)

select * from final
