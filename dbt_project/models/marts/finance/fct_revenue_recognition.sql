{{ config(tags=['finance']) }}
-- Revenue recognition per issued line and calendar month (UTC). Each line is recognized
-- straight-line over its service period by elapsed time (whole days for the usual
-- midnight boundaries; a period starting mid-day counts from that instant): fees and
-- seats over the period they pay for, prorations over the remaining period they cover,
-- usage (overage, adjustments) over the usage period it was consumed in, even when the
-- invoice came later. Rounding: the running total to each month end is rounded half up
-- to the currency's minor unit, and a month recognizes the difference of two rounded
-- running totals, so the months add up to the line exactly and the last one carries the
-- true-up (DECISIONLOG.md). A voided invoice's recognized total is reversed in the
-- month of the void, and nothing is recognized after it.
with lines as (
    select * from {{ ref('fct_issued_invoice_lines') }}
),

currencies as (
    select * from {{ ref('stg_billing__currencies') }}
),

spans as (
    select
        lines.*,
        currencies.minor_units,
        extract(epoch from lines.service_end - lines.service_start) as period_seconds,
        date_trunc(
            'month', least(lines.service_start, lines.issued_at), 'UTC'
        ) as first_month,
        date_trunc(
            'month',
            coalesce(
                lines.voided_at,
                greatest(lines.service_end - interval '1 microsecond', lines.issued_at)
            ),
            'UTC'
        ) as last_month
    from lines
    inner join currencies on lines.currency = currencies.currency
),

line_months as (
    select
        spans.*,
        series.month_local at time zone 'UTC' as month_start,
        (series.month_local + interval '1 month') at time zone 'UTC' as month_end
    from spans
    cross join lateral generate_series(
        spans.first_month at time zone 'UTC',
        spans.last_month at time zone 'UTC',
        interval '1 month'
    ) as series (month_local)
),

cumulative as (
    select
        line_months.*,
        {{ recognized_through('line_months', 'month_start') }} as recognized_to_month_start,
        {{ recognized_through('line_months', 'month_end') }} as recognized_to_month_end
    from line_months
),

final as (
    select
        invoice_line_item_id,
        invoice_id,
        invoice_number,
        line_number,
        organization_id,
        currency,
        kind,
        is_usage,
        (month_start at time zone 'UTC')::date as month,
        amount::numeric(20, 6) as line_amount,
        (recognized_to_month_end - recognized_to_month_start)::numeric(20, 6)
            as recognized_amount,
        recognized_to_month_end::numeric(20, 6) as recognized_to_date,
        issued_at < month_end as is_issued,
        (
            case
                when issued_at < month_end and coalesce(voided_at >= month_end, true)
                    then amount
                else 0
            end
        )::numeric(20, 6) as issued_amount,
        (
            case
                when issued_at < month_end and coalesce(voided_at >= month_end, true)
                    then amount - recognized_to_month_end
                else 0
            end
        )::numeric(20, 6) as deferred_balance
    from cumulative
)

select * from final
