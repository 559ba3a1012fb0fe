-- Usage each rated invoice bills in arrears: per invoice and metric, the sum over the
-- ranges of int_usage_ranges, each whole rolled-up day from the daily rollup and every
-- other range from the hourly rows in [range_start, range_end). The run's only scan of
-- usage.
with ranges as (
    select * from {{ ref('int_usage_ranges') }}
),

daily as (
    select * from {{ ref('stg_billing__usage_daily') }}
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
    where not from_rollup
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
            and ranges.usage_day = daily.usage_day
    where ranges.from_rollup
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
        not ranges.from_rollup
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
