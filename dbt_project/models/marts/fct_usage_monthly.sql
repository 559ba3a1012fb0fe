-- Usage per organization, metric and calendar month (UTC): totals for summed metrics;
-- for averaged ones (storage) the average over every hour of the month, a missing hour
-- counting as 0, as billing does (docs/rate-card.md, overage: storage).
with usage as (
    select * from {{ ref('stg_billing__usage_metrics') }}
),

metrics as (
    select * from {{ ref('stg_billing__metrics') }}
),

monthly as (
    select
        organization_id,
        metric,
        date_trunc('month', hour_start, 'UTC') as month_start,
        sum(quantity) as total_quantity,
        count(*) as hours_reported
    from usage
    group by organization_id, metric, date_trunc('month', hour_start, 'UTC')
),

final as (
    select
        monthly.organization_id,
        monthly.metric,
        (monthly.month_start at time zone 'UTC')::date as month,
        monthly.total_quantity::numeric(24, 6) as total_quantity,
        {{ billed_usage(
            'monthly.total_quantity',
            'metrics.aggregation',
            seconds_between('monthly.month_start', add_months_utc('monthly.month_start', 1))
        ) }}::numeric(24, 6) as billed_quantity,
        monthly.hours_reported
    from monthly
    inner join metrics on monthly.metric = metrics.metric
)

select * from final
