with source as (
    select * from {{ source('billing', 'dictamesh_billing_usage_adjustments') }}
),

renamed as (
    select
        id as usage_adjustment_id,
        organization_id,
        metric,
        hour_start,
        invoice_id,
        old_quantity::numeric(24, 6) as old_quantity,
        new_quantity::numeric(24, 6) as new_quantity,
        detected_at
    from source
)

select * from renamed
