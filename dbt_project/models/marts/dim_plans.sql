{{ config(materialized='view') }}
-- The plan catalog with USD list prices and included monthly quotas, one row per plan.
with plans as (
    select * from {{ ref('stg_billing__plans') }}
),

price_books as (
    select * from {{ ref('stg_billing__price_books') }}
    where currency = 'USD'
),

quotas as (
    select
        plan_id,
        max(included_quantity) filter (where metric = 'api_calls') as included_api_calls,
        max(included_quantity) filter (where metric = 'storage') as included_storage_gb,
        max(included_quantity) filter (where metric = 'transfer') as included_transfer_gb,
        max(included_quantity) filter (where metric = 'query_processing')
            as included_query_gb
    from {{ ref('stg_billing__plan_quotas') }}
    group by plan_id
),

final as (
    select
        plans.plan_id,
        plans.plan_name,
        plans.included_seats,
        plans.seats_sellable,
        plans.max_adapters,
        plans.bills_overage,
        plans.sort_order,
        plans.is_active,
        price_books.monthly_fee as monthly_fee_usd,
        price_books.annual_fee as annual_fee_usd,
        price_books.seat_price_monthly as seat_price_monthly_usd,
        quotas.included_api_calls,
        quotas.included_storage_gb,
        quotas.included_transfer_gb,
        quotas.included_query_gb
    from plans
    left join price_books on plans.plan_id = price_books.plan_id
    left join quotas on plans.plan_id = quotas.plan_id
)

select * from final
