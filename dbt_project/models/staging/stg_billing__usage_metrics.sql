with source as (
    select * from {{ source('billing', 'dictamesh_billing_usage_metrics') }}
),

renamed as (
    select
        organization_id,
        metric,
        hour_start,
        quantity::numeric(24, 6) as quantity,
        source as usage_source
    from source
)

select * from renamed
