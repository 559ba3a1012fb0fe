-- Usage each rated invoice bills in arrears: per invoice and metric, the sum over the
-- ranges of int_usage_ranges, the spans of whole days from the daily rollup (only its
-- current days: the others are hourly ranges) and every other range from the hourly
-- rows in [range_start, range_end). The run's only scan of usage.
with ranges as (
    select * from {{ ref('int_usage_ranges') }}
),

daily as (
    select * from {{ ref('stg_billing__usage_daily') }}
),

rolled_up_days as (
    select usage_day from {{ ref('stg_billing__usage_day_versions') }}
    where is_rolled_up
),

hourly as (
    select * from {{ ref('stg_billing__usage_metrics') }}
),

-- constant bounds let Postgres skip every daily partition no hourly range needs
bounds as (
    select
        min(range_start) as first_hour,
        max(range_end) as end_hour
    from ranges
    where read_from = 'hours'
),

from_rollup as (
    select
        ranges.invoice_key,
        daily.metric,
        daily.quantity
    from ranges
    inner join daily
        on
            ranges.organization_id = daily.organization_id
            and (ranges.range_start at time zone 'UTC')::date <= daily.usage_day
            and (ranges.range_end at time zone 'UTC')::date > daily.usage_day
    inner join rolled_up_days on daily.usage_day = rolled_up_days.usage_day
    where ranges.read_from = 'rollup'
),

from_hours as (
    select
        ranges.invoice_key,
        hourly.metric,
        hourly.quantity
    from ranges
    inner join hourly
        on
            ranges.organization_id = hourly.organization_id
            and ranges.range_start <= hourly.hour_start
            and ranges.range_end > hourly.hour_start
    where
        ranges.read_from = 'hours'
        and hourly.hour_start >= (select bounds.first_hour from bounds)
        and hourly.hour_start < (select bounds.end_hour from bounds)
),

final as (
    select
        invoice_key,
        metric,
        sum(quantity) as used_quantity
    from (
        select * from from_rollup
        union all
        select * from from_hours
    ) as parts
    group by invoice_key, metric
)

select * from final
