with source as (
    select * from {{ source('billing', 'dictamesh_billing_metrics') }}
),

renamed as (
    select
        id as metric,
        display_name as metric_name,
        unit as billing_unit,
        unit_size::numeric(20, 6) as unit_size,
        aggregation
    from source
)

select * from renamed
