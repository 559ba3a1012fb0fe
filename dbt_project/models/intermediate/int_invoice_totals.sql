-- Subtotal, promotions, tax (docs/rate-card.md: discounts, tax; promotions in order,
-- negative subtotal, credit order). Promotions apply in
-- position order, each to what is left of the subtotal, while the invoice's sequence
-- number is within the promotion's duration; a percent discount is rounded to the minor
-- unit per invoice and no discount goes below zero. A negative subtotal is neither
-- discounted nor taxed: the invoice total is 0 and the amount becomes a balance credit.
with schedule as (
    select * from {{ ref('int_invoice_schedule') }}
    where {{ in_billing_window('billing_date') }}
),

lines as (
    select * from {{ ref('int_invoice_lines') }}
),

organizations as (
    select * from {{ ref('stg_billing__organizations') }}
),

currencies as (
    select * from {{ ref('stg_billing__currencies') }}
),

promotions as (
    select * from {{ ref('stg_billing__promotions') }}
),

line_sums as (
    select
        invoice_key,
        sum(amount) as line_total
    from lines
    group by invoice_key
),

subtotals as (
    select
        schedule.*,
        currencies.minor_units,
        coalesce(line_sums.line_total, 0)::numeric(20, 6) as subtotal
    from schedule
    inner join currencies on schedule.currency = currencies.currency
    left join line_sums on schedule.invoice_key = line_sums.invoice_key
),

applicable_promotions as (
    select
        subtotals.invoice_key,
        promotions.percent_off,
        promotions.amount_off,
        row_number() over (
            partition by subtotals.invoice_key order by promotions.application_order
        ) as step
    from subtotals
    inner join promotions on subtotals.organization_id = promotions.organization_id
    where
        subtotals.subtotal > 0
        and (
            promotions.duration_periods is null
            or subtotals.invoice_sequence <= promotions.duration_periods
        )
),

discount_steps as (
    with recursive walk as (
        select
            invoice_key,
            0::bigint as step,
            subtotal::numeric as remaining,
            minor_units
        from subtotals
        where subtotal > 0
        union all
        select
            walk.invoice_key,
            promo.step,
            walk.remaining - least(
                walk.remaining,
                case
                    when promo.percent_off is not null
                        then round(walk.remaining * promo.percent_off / 100, walk.minor_units)
                    else round(promo.amount_off, walk.minor_units)
                end
            ) as remaining,
            walk.minor_units
        from walk
        inner join applicable_promotions as promo
            on walk.invoice_key = promo.invoice_key and promo.step = walk.step + 1
    )

    select
        invoice_key,
        min(remaining) as taxable_subtotal
    from walk
    group by invoice_key
),

taxed as (
    select
        subtotals.*,
        coalesce(discount_steps.taxable_subtotal, 0)::numeric(20, 6) as taxable_subtotal,
        (
            case
                when organizations.is_tax_exempt then 0
                else coalesce(organizations.tax_rate, {{ var('default_tax_rate') }})
            end
        )::numeric(9, 6) as tax_rate
    from subtotals
    inner join organizations on subtotals.organization_id = organizations.organization_id
    left join discount_steps on subtotals.invoice_key = discount_steps.invoice_key
),

final as (
    select
        invoice_key,
        subscription_id,
        subscription_external_id,
        organization_id,
        organization_external_id,
        billing_date,
        billing_date as period_start,
        period_end,
        invoice_sequence,
        arrears_start as usage_start,
        arrears_end as usage_end,
        currency,
        minor_units,
        subtotal,
        (greatest(subtotal, 0) - taxable_subtotal)::numeric(20, 6) as discount,
        tax_rate,
        round(taxable_subtotal * tax_rate, minor_units)::numeric(20, 6) as tax,
        (taxable_subtotal + round(taxable_subtotal * tax_rate, minor_units))::numeric(20, 6)
            as total,
        greatest(-subtotal, 0)::numeric(20, 6) as balance_credit
    from taxed
)

select * from final
