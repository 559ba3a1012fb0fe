-- Usage each rated invoice bills in arrears (int_rated_invoices): the sum of hourly rows
-- in [arrears_start, arrears_end) per organization and metric. The one scan of the usage
-- table, read once per run.
with schedule as (
    select * from {{ ref('int_rated_invoices') }}
),

usage as (
    select * from {{ ref('stg_billing__usage_metrics') }}
),

-- constant bounds let Postgres skip every daily partition outside the rated periods
bounds as (
    select
        min(arrears_start) as first_hour,
        max(arrears_end) as end_hour
    from schedule
),

final as (
    select
        schedule.invoice_key,
        usage.metric,
        sum(usage.quantity) as used_quantity
    from schedule
    inner join usage
        on
            schedule.organization_id = usage.organization_id
            and schedule.arrears_start <= usage.hour_start
            and schedule.arrears_end > usage.hour_start
    where
        usage.hour_start >= (select bounds.first_hour from bounds)
        and usage.hour_start < (select bounds.end_hour from bounds)
    group by schedule.invoice_key, usage.metric
)

select * from final
