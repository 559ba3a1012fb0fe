with source as (
    select * from {{ source('billing', 'dictamesh_billing_fx_rates') }}
),

renamed as (
    select
        currency,
        valid_from,
        usd_per_unit::numeric(20, 10) as usd_per_unit
    from source
)

select * from renamed
