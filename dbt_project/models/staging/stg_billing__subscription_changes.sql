with source as (
    select * from {{ source('billing', 'dictamesh_billing_subscription_changes') }}
),

renamed as (
    select
        id as subscription_change_id,
        subscription_id,
        effective_at,
        plan_id as new_plan_id,
        seats::integer as new_seats
    from source
)

select * from renamed
