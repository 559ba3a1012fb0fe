-- Where each rated invoice's usage is read from. Its arrears period [arrears_start,
-- arrears_end) is cut at UTC midnight into a span of whole days and the partial days at
-- its edges. The span is read from the daily rollup (24x fewer rows than its hours) for
-- every day whose rollup is current; the partial edges and the span's other days
-- (written since their rollup, or never rolled up) are read from the hourly rows
-- (int_usage_by_invoice). The sum is the same either way.
with schedule as (
    select
        invoice_key,
        organization_id,
        arrears_start,
        arrears_end,
        date_trunc('day', arrears_start, 'UTC') as start_midnight,
        date_trunc('day', arrears_end, 'UTC') as days_end
    from {{ ref('int_rated_invoices') }}
),

periods as (
    select
        *,
        case
            when start_midnight = arrears_start then arrears_start
            else start_midnight + interval '24 hours'
        end as days_start
    from schedule
),

rolled_up_days as (
    select usage_day from {{ ref('stg_billing__usage_day_versions') }}
    where is_rolled_up
),

-- each span of whole days once, however many invoices share it, then its days
-- (steps of 24 hours, not '1 day': a UTC day has 24 hours whatever the session zone)
spans as (
    select distinct
        days_start,
        days_end
    from periods
    where days_start < days_end
),

span_days as (
    select
        spans.days_start,
        spans.days_end,
        spans.days_start + day_index * interval '24 hours' as day_start
    from spans
    cross join lateral generate_series(
        0, ({{ seconds_between('spans.days_start', 'spans.days_end') }} / 86400)::integer - 1
    ) as day_index
),

-- the span's days the rollup cannot answer for
unrolled_days as (
    select span_days.*
    from span_days
    left join rolled_up_days
        on (span_days.day_start at time zone 'UTC')::date = rolled_up_days.usage_day
    where rolled_up_days.usage_day is null
),

whole_days as (
    select
        invoice_key,
        organization_id,
        days_start as range_start,
        days_end as range_end,
        'rollup' as read_from
    from periods
    where days_start < days_end
),

-- the partial day at the start, or the whole period when it holds no whole day
head as (
    select
        invoice_key,
        organization_id,
        arrears_start as range_start,
        case when days_start < days_end then days_start else arrears_end end as range_end,
        'hours' as read_from
    from periods
),

tail as (
    select
        invoice_key,
        organization_id,
        days_end as range_start,
        arrears_end as range_end,
        'hours' as read_from
    from periods
    where days_start < days_end
),

unrolled as (
    select
        periods.invoice_key,
        periods.organization_id,
        unrolled_days.day_start as range_start,
        unrolled_days.day_start + interval '24 hours' as range_end,
        'hours' as read_from
    from periods
    inner join unrolled_days
        on
            periods.days_start = unrolled_days.days_start
            and periods.days_end = unrolled_days.days_end
),

final as (
    select * from whole_days
    union all
    select * from head
    where range_start < range_end
    union all
    select * from tail
    where range_start < range_end
    union all
    select * from unrolled
)

select * from final
