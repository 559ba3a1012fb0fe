-- Proration (docs/rate-card.md "Billing periods and proration", proration pairs,
-- cancellation), by seconds:
-- a change inside a fee period gives, per component whose amount changed, a credit
-- -(old x fraction) and a charge new x fraction on the next invoice, where fraction =
-- seconds from the change to the fee period end / seconds of the fee period (the term
-- year on annual plans). An immediate cancellation credits the unused fee and seats.
with schedule as (
    select * from {{ ref('int_invoice_schedule') }}
    where has_arrears and {{ in_billing_window('billing_date') }}
),

states as (
    select * from {{ ref('int_subscription_states') }}
),

calendar as (
    select * from {{ ref('int_billing_calendar') }}
),

changes as (
    select
        schedule.invoice_key,
        new_state.state_seq,
        new_state.valid_from as changed_at,
        calendar.fee_period_start,
        calendar.fee_period_end,
        old_state.plan_label as old_label,
        new_state.plan_label as new_label,
        old_state.fee_amount as old_fee,
        new_state.fee_amount as new_fee,
        old_state.seat_amount as old_seats,
        new_state.seat_amount as new_seats
    from schedule
    inner join states as new_state
        on
            schedule.subscription_id = new_state.subscription_id
            and new_state.state_seq > 0
            and schedule.arrears_start <= new_state.valid_from
            and schedule.arrears_end > new_state.valid_from
    inner join states as old_state
        on
            new_state.subscription_id = old_state.subscription_id
            and new_state.state_seq = old_state.state_seq + 1
    inner join calendar
        on
            new_state.subscription_id = calendar.subscription_id
            and new_state.valid_from >= calendar.period_start
            and new_state.valid_from < calendar.period_end
    -- a change on a fee date was billed in advance at the new price
    where new_state.valid_from <> calendar.fee_period_start
),

cancellations as (
    select
        schedule.invoice_key,
        schedule.billing_date as cancelled_at,
        calendar.fee_period_start,
        calendar.fee_period_end,
        states.plan_label,
        states.fee_amount,
        states.seat_amount
    from schedule
    inner join states
        on
            schedule.subscription_id = states.subscription_id
            and schedule.billing_date = states.valid_to
            and states.valid_from < states.valid_to
    inner join calendar
        on
            schedule.subscription_id = calendar.subscription_id
            and schedule.billing_date > calendar.period_start
            and schedule.billing_date < calendar.period_end
    where schedule.invoice_type = 'final'
),

-- component 1: the fee; component 2: extra seats; within a pair the credit first
change_pairs as (
    select
        changes.invoice_key,
        changes.state_seq,
        sides.component,
        sides.side,
        changes.changed_at,
        changes.fee_period_start,
        changes.fee_period_end,
        sides.description,
        sides.full_amount
    from changes
    cross join
        lateral (
            values
            (1, 1, 'Unused time on ' || changes.old_label, -changes.old_fee),
            (1, 2, 'Remaining time on ' || changes.new_label, changes.new_fee),
            (2, 1, 'Unused time on extra seats', -changes.old_seats),
            (2, 2, 'Remaining time on extra seats', changes.new_seats)
        ) as sides (component, side, description, full_amount)
    where
        (sides.component = 1 and changes.old_fee <> changes.new_fee)
        or (sides.component = 2 and changes.old_seats <> changes.new_seats)
),

-- the cancellation credits come after every change of the period
cancellation_credits as (
    select
        cancellations.invoice_key,
        1000000 as state_seq,
        credits.component,
        1 as side,
        cancellations.cancelled_at as changed_at,
        cancellations.fee_period_start,
        cancellations.fee_period_end,
        credits.description,
        credits.full_amount
    from cancellations
    cross join
        lateral (
            values
            (1, 'Unused time on ' || cancellations.plan_label, -cancellations.fee_amount),
            (2, 'Unused time on extra seats', -cancellations.seat_amount)
        ) as credits (component, description, full_amount)
    where credits.full_amount <> 0
),

pairs as (
    select * from change_pairs
    union all
    select * from cancellation_credits
),

final as (
    select
        invoice_key,
        'proration' as kind,
        state_seq * 10 + component * 2 + side as sort_key,
        description,
        null::text as metric,
        round(
            {{ seconds_between('changed_at', 'fee_period_end') }}
            / {{ seconds_between('fee_period_start', 'fee_period_end') }},
            6
        )::numeric(24, 6) as quantity,
        full_amount::numeric(20, 6) as unit_amount,
        -- multiply before dividing: one rounding of the exact product (rule six decimals);
        -- round() on numeric is half away from zero, also for credits (rule half up)
        round(
            full_amount * {{ seconds_between('changed_at', 'fee_period_end') }}
            / {{ seconds_between('fee_period_start', 'fee_period_end') }},
            6
        )::numeric(20, 6) as amount,
        changed_at as period_start,
        fee_period_end as period_end
    from pairs
)

select * from final
