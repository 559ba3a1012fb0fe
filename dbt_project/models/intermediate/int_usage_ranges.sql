-- Each rated invoice's arrears period [arrears_start, arrears_end) cut at UTC midnight:
-- one range per day it touches. A whole day whose daily rollup is current (no hourly
-- write since the rollup summed it) is read from the rollup, 24x fewer rows than its
-- hours; the partial days at a period's edges and days written since their rollup are
-- read from the hourly rows (int_usage_by_invoice). Either way the sum is the same.
with schedule as (
    select
        invoice_key,
        organization_id,
        arrears_start,
        arrears_end,
        date_trunc('day', arrears_start, 'UTC') as first_day_start,
        ceil(
            {{ seconds_between("date_trunc('day', arrears_start, 'UTC')", 'arrears_end') }} / 86400
        )::integer as day_count
    from {{ ref('int_rated_invoices') }}
),

rolled_up_days as (
    select usage_day from {{ ref('stg_billing__usage_day_versions') }}
    where is_rolled_up
),

-- steps of 24 hours, not '1 day': every UTC day has 24 hours, whatever the session zone
days as (
    select
        schedule.invoice_key,
        schedule.organization_id,
        schedule.arrears_start,
        schedule.arrears_end,
        schedule.first_day_start + day_index * interval '24 hours' as day_start
    from schedule
    cross join lateral generate_series(0, schedule.day_count - 1) as day_index
),

final as (
    select
        days.invoice_key,
        days.organization_id,
        (days.day_start at time zone 'UTC')::date as usage_day,
        greatest(days.arrears_start, days.day_start) as range_start,
        least(days.arrears_end, days.day_start + interval '24 hours') as range_end,
        coalesce(
            days.arrears_start <= days.day_start
            and days.day_start + interval '24 hours' <= days.arrears_end
            and rolled_up_days.usage_day is not null,
            false
        ) as from_rollup
    from days
    left join rolled_up_days
        on (days.day_start at time zone 'UTC')::date = rolled_up_days.usage_day
)

select * from final
