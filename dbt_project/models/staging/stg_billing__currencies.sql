with source as (
    select * from {{ source('billing', 'dictamesh_billing_currencies') }}
),

renamed as (
    select
        code as currency,
        minor_units::integer as minor_units,
        catalog_factor::numeric(20, 6) as catalog_factor
    from source
)

select * from renamed
