-- The monthly period spine of every subscription: period k runs from anchor + k months
-- to anchor + k + 1 months. Annual plans bill usage monthly too; their fee periods are
-- the term years around each month. The dates come from the warehouse's calendar
-- functions (macros/billing_calendar.sql), which the Python callers query too.
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
        bounds.billing_cycle,
        bounds.billing_anchor,
        months.period_index
    from bounds
    cross join
        lateral generate_series(
            0, {{ period_index_utc('bounds.billing_anchor', 'bounds.spine_end') }}
        ) as months (period_index)
    where bounds.spine_end > bounds.billing_anchor
),

final as (
    select
        spine.subscription_id,
        spine.period_index,
        period.period_start,
        period.period_end,
        period.fee_period_start,
        period.fee_period_end,
        period.is_fee_date
    from spine
    cross join
        lateral {{ billing_period(
            'spine.billing_anchor', 'spine.billing_cycle', 'spine.period_index'
        ) }} as period
)

select * from final
