-- Built with the billing models (tag billing_daily): they read the rollup that
-- the daily usage asset writes just before them.
{{ config(tags=['billing_daily']) }}

with source as (
    select * from {{ source('billing', 'dictamesh_billing_usage_day_versions') }}
),

renamed as (
    select
        day as usage_day,
        version as usage_version,
        rolled_up_version,
        coalesce(rolled_up_version = version, false) as is_rolled_up
    from source
)

select * from renamed
