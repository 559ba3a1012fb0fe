-- The monthly period spine of every subscription: period k runs from anchor + k months
-- to anchor + k + 1 months (UTC, month-end rule in add_months_utc). Annual plans bill
-- usage monthly too; their fee periods are the term years around each month.
-- The spine reaches the period holding the window end or the cancellation, whichever
-- comes first: nothing later can be billed in this run.
with subscriptions as (
    select * from {{ ref('stg_billing__subscriptions') }}
),

bounds as (
    select
        subscription_id,
        billing_anchor,
        billing_cycle,
        least({{ window_end() }}, coalesce(cancel_at, 'infinity')) as spine_end
    from subscriptions
),

spine as (
    select
        bounds.subscription_id,
        bounds.spine_end,
        bounds.billing_cycle,
        bounds.billing_anchor,
        months.period_index
    from bounds
    cross join
        lateral generate_series(
            0,
            -- one more than whole months: month-end clamping can put a date before the
            -- spine end that age() does not count as a whole month (Jan 31 -> Feb 28)
            {{ months_between_utc('bounds.billing_anchor', 'bounds.spine_end') }} + 1
        ) as months (period_index)
    where bounds.spine_end > bounds.billing_anchor
),

periods as (
    select
        subscription_id,
        spine_end,
        period_index,
        {{ add_months_utc('billing_anchor', 'period_index') }} as period_start,
        {{ add_months_utc('billing_anchor', 'period_index + 1') }} as period_end,
        case
            when billing_cycle = 'annual'
                then {{ add_months_utc('billing_anchor', '12 * (period_index / 12)') }}
            else {{ add_months_utc('billing_anchor', 'period_index') }}
        end as fee_period_start,
        case
            when billing_cycle = 'annual'
                then {{ add_months_utc('billing_anchor', '12 * (period_index / 12 + 1)') }}
            else {{ add_months_utc('billing_anchor', 'period_index + 1') }}
        end as fee_period_end,
        billing_cycle = 'monthly' or period_index % 12 = 0 as is_fee_date
    from spine
),

final as (
    select
        subscription_id,
        period_index,
        period_start,
        period_end,
        fee_period_start,
        fee_period_end,
        is_fee_date
    from periods
    where period_start <= spine_end
)

select * from final
