-- Usage each invoice bills in arrears: the sum of hourly rows in [arrears_start,
-- arrears_end) per organization and metric: the one scan of the usage table, read once
-- by int_invoice_lines (a table) for the whole window.
with schedule as (
    select * from {{ ref('int_invoice_schedule') }}
    where has_arrears and {{ in_billing_window('billing_date') }}
),

usage as (
    select * from {{ ref('stg_billing__usage_metrics') }}
),

final as (
    select
        schedule.invoice_key,
        usage.metric,
        sum(usage.quantity) as used_quantity,
        count(*) as hours_with_usage
    from schedule
    inner join usage
        on
            schedule.organization_id = usage.organization_id
            and usage.hour_start >= schedule.arrears_start
            and usage.hour_start < schedule.arrears_end
    group by schedule.invoice_key, usage.metric
)

select * from final
