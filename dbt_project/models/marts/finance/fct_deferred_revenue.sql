{{ config(tags=['finance']) }}
-- Deferred revenue per currency at each month end: what issued (and not voided) invoices
-- billed for service not yet delivered, with the month's recognized revenue beside it.
-- Usage recognized before its invoice is issued is accrued, not deferred: it is not in
-- the balance until the invoice exists.
with recognition as (
    select * from {{ ref('fct_revenue_recognition') }}
),

final as (
    select
        month,
        ((month + interval '1 month') - interval '1 day')::date as month_end,
        currency,
        sum(deferred_balance)::numeric(20, 6) as deferred_balance,
        sum(recognized_amount)::numeric(20, 6) as recognized_revenue,
        coalesce(sum(recognized_amount) filter (where not is_usage), 0)::numeric(20, 6)
            as recognized_recurring,
        coalesce(sum(recognized_amount) filter (where is_usage), 0)::numeric(20, 6)
            as recognized_usage,
        count(distinct invoice_id) filter (where deferred_balance <> 0) as invoices_deferred
    from recognition
    group by month, currency
)

select * from final
