with source as (
    select * from {{ source('billing', 'dictamesh_billing_price_books') }}
),

renamed as (
    select
        plan_id,
        currency,
        monthly_fee::numeric(20, 6) as monthly_fee,
        annual_fee::numeric(20, 6) as annual_fee,
        seat_price_monthly::numeric(20, 6) as seat_price_monthly,
        source as price_source
    from source
)

select * from renamed
