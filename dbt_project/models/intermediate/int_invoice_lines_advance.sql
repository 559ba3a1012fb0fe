-- In-advance lines (docs/rate-card.md: fee, extra seats): the subscription fee and extra seats for
-- the period an invoice opens, at the state in effect at its billing date (a change
-- exactly on the billing date is already in effect, so it is never prorated).
with schedule as (
    select * from {{ ref('int_invoice_schedule') }}
    where has_advance_lines and {{ in_billing_window('billing_date') }}
),

states as (
    select * from {{ ref('int_subscription_states') }}
),

current_state as (
    select
        schedule.invoice_key,
        schedule.billing_date,
        schedule.period_end,
        states.*
    from schedule
    inner join states
        on
            schedule.subscription_id = states.subscription_id
            and schedule.billing_date >= states.valid_from
            and schedule.billing_date < states.valid_to
),

fees as (
    select
        invoice_key,
        'subscription_fee' as kind,
        0 as sort_key,
        plan_label as description,
        null::text as metric,
        1::numeric(24, 6) as quantity,
        fee_amount as unit_amount,
        fee_amount as amount,
        billing_date as period_start,
        period_end
    from current_state
),

seats as (
    select
        invoice_key,
        'seats' as kind,
        0 as sort_key,
        'Extra seats' as description,
        null::text as metric,
        extra_seats::numeric(24, 6) as quantity,
        seat_unit_amount as unit_amount,
        seat_amount as amount,
        billing_date as period_start,
        period_end
    from current_state
    where extra_seats > 0
),

final as (
    select * from fees
    union all
    select * from seats
)

select * from final
