-- Built with the billing models (tag billing_daily): they read the rollup that
-- the daily usage asset writes just before them.
{{ config(tags=['billing_daily']) }}

with source as (
    select * from {{ source('billing', 'dictamesh_billing_usage_daily') }}
),

renamed as (
    select
        organization_id,
        metric,
        day as usage_day,
        quantity::numeric(24, 6) as quantity
    from source
)

select * from renamed
