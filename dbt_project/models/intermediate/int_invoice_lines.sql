-- Every draft line in RATE_CARD.md order (fee, seats, proration, overage, then usage
-- and price corrections of finalized invoices), each rounded
-- half up (away from zero) to its currency's minor unit (step 5; JPY has none).
with schedule as (
    select * from {{ ref('int_invoice_schedule') }}
    where {{ in_billing_window('billing_date') }}
),

currencies as (
    select * from {{ ref('stg_billing__currencies') }}
),

advance as (
    select
        *,
        '[]'::jsonb as tier_detail,
        null::text as adjusts_invoice_key
    from {{ ref('int_invoice_lines_advance') }}
),

proration as (
    select
        *,
        '[]'::jsonb as tier_detail,
        null::text as adjusts_invoice_key
    from {{ ref('int_invoice_lines_proration') }}
),

overage as (
    select
        *,
        null::text as adjusts_invoice_key
    from {{ ref('int_invoice_lines_overage') }}
),

adjustments as (
    select * from {{ ref('int_invoice_lines_adjustment') }}
    union all
    select * from {{ ref('int_invoice_lines_rerate') }}
),

lines as (
    select * from advance
    union all
    select * from proration
    union all
    select * from overage
    union all
    select
        invoice_key,
        kind,
        sort_key,
        description,
        metric,
        quantity,
        unit_amount,
        amount,
        period_start,
        period_end,
        tier_detail,
        adjusts_invoice_key
    from adjustments
),

final as (
    select
        lines.invoice_key,
        row_number() over (
            partition by lines.invoice_key
            order by
                case lines.kind
                    when 'subscription_fee' then 1
                    when 'seats' then 2
                    when 'proration' then 3
                    when 'overage' then 4
                    else 5
                end,
                lines.sort_key,
                lines.metric
        )::integer as line_number,
        lines.kind,
        lines.description,
        lines.metric,
        lines.quantity,
        lines.unit_amount,
        lines.amount as unrounded_amount,
        round(lines.amount, currencies.minor_units)::numeric(20, 6) as amount,
        lines.period_start,
        lines.period_end,
        lines.tier_detail,
        lines.adjusts_invoice_key,
        schedule.billing_date,
        schedule.currency
    from lines
    inner join schedule on lines.invoice_key = schedule.invoice_key
    inner join currencies on schedule.currency = currencies.currency
)

select * from final
