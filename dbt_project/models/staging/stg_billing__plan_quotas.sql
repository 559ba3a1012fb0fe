with source as (
    select * from {{ source('billing', 'dictamesh_billing_plan_quotas') }}
),

renamed as (
    select
        plan_id,
        metric,
        included_quantity::numeric(24, 6) as included_quantity
    from source
)

select * from renamed
