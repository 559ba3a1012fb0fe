with source as (
    select * from {{ source('billing', 'dictamesh_billing_subscription_plans') }}
),

renamed as (
    select
        id as plan_id,
        name as plan_name,
        included_seats::integer as included_seats,
        seats_sellable,
        max_adapters::integer as max_adapters,
        bills_overage,
        sort_order::integer as sort_order,
        active as is_active
    from source
)

select * from renamed
