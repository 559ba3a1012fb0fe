-- Every draft line in docs/rate-card.md order (fee, seats, proration, overage, usage within
-- quota on an invoice with no other line, then usage and price corrections of finalized
-- invoices), each rounded half up (away from zero) to its currency's minor unit (line
-- rounding; JPY has none).
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

-- usage lines (zero amounts) explain an invoice that would otherwise have no line
shown as (
    select * from (
        select
            *,
            bool_or(kind <> 'usage') over (partition by invoice_key) as has_charges
        from lines
    ) as flagged
    where kind <> 'usage' or not has_charges
),

final as (
    select
        shown.invoice_key,
        row_number() over (
            partition by shown.invoice_key
            order by
                case shown.kind
                    when 'subscription_fee' then 1
                    when 'seats' then 2
                    when 'proration' then 3
                    when 'overage' then 4
                    when 'usage' then 5
                    else 6
                end,
                shown.sort_key,
                shown.metric
        )::integer as line_number,
        shown.kind,
        shown.description,
        shown.metric,
        shown.quantity,
        shown.unit_amount,
        shown.amount as unrounded_amount,
        round(shown.amount, currencies.minor_units)::numeric(20, 6) as amount,
        shown.period_start,
        shown.period_end,
        shown.tier_detail,
        shown.adjusts_invoice_key,
        schedule.billing_date,
        schedule.currency
    from shown
    inner join schedule on shown.invoice_key = schedule.invoice_key
    inner join currencies on schedule.currency = currencies.currency
)

select * from final
