with source as (
    select * from {{ source('billing', 'dictamesh_billing_pricing_tiers') }}
),

renamed as (
    select
        metric,
        currency,
        tier::integer as tier,
        lower_bound::numeric(24, 6) as lower_bound,
        upper_bound::numeric(24, 6) as upper_bound,
        unit_price::numeric(20, 6) as unit_price
    from source
)

select * from renamed
