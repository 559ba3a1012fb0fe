with source as (
    select * from {{ source('billing', 'dictamesh_billing_subscriptions') }}
),

renamed as (
    select
        id as subscription_id,
        external_id as subscription_external_id,
        organization_id,
        plan_id,
        billing_cycle,
        status as subscription_status,
        seats::integer as seats,
        pricing_mode,
        price_override::numeric(20, 6) as price_override,
        billing_anchor,
        started_at,
        cancel_at
    from source
)

select * from renamed
