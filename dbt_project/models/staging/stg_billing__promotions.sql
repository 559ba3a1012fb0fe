with source as (
    select * from {{ source('billing', 'dictamesh_billing_promotions') }}
),

renamed as (
    select
        id as promotion_id,
        organization_id,
        code as promotion_code,
        position::integer as application_order,
        percent_off::numeric(9, 6) as percent_off,
        amount_off::numeric(20, 6) as amount_off,
        duration_periods::integer as duration_periods
    from source
)

select * from renamed
