-- One row per state a subscription was in: its start, then each change in order.
-- A change carries only what it changes (plan and/or seats); the rest carries forward.
-- The custom price override ends at the first change to another plan (docs/rate-card.md,
-- rule custom price override).
with subscriptions as (
    select * from {{ ref('stg_billing__subscriptions') }}
),

changes as (
    select * from {{ ref('stg_billing__subscription_changes') }}
),

organizations as (
    select * from {{ ref('stg_billing__organizations') }}
),

plans as (
    select * from {{ ref('stg_billing__plans') }}
),

price_books as (
    select * from {{ ref('stg_billing__price_books') }}
),

events as (
    select
        subscription_id,
        0 as state_seq,
        started_at as valid_from,
        plan_id,
        seats
    from subscriptions
    union all
    select
        changes.subscription_id,
        row_number() over (
            partition by changes.subscription_id
            order by changes.effective_at, changes.subscription_change_id
        ) as state_seq,
        changes.effective_at as valid_from,
        changes.new_plan_id as plan_id,
        changes.new_seats as seats
    from changes
    inner join subscriptions on changes.subscription_id = subscriptions.subscription_id
    -- changes at or after the cancellation never take effect
    where changes.effective_at < coalesce(subscriptions.cancel_at, 'infinity')
),

grouped as (
    select
        *,
        count(plan_id) over (partition by subscription_id order by state_seq) as plan_group,
        count(seats) over (partition by subscription_id order by state_seq) as seats_group
    from events
),

carried as (
    select
        subscription_id,
        state_seq,
        valid_from,
        first_value(plan_id) over (
            partition by subscription_id, plan_group order by state_seq
        ) as plan_id,
        first_value(seats) over (
            partition by subscription_id, seats_group order by state_seq
        ) as seats
    from grouped
),

with_override as (
    select
        carried.*,
        bool_and(carried.plan_id = subscriptions.plan_id) over (
            partition by carried.subscription_id order by carried.state_seq
        ) as is_on_initial_plan,
        coalesce(
            lead(carried.valid_from) over (
                partition by carried.subscription_id order by carried.state_seq
            ),
            subscriptions.cancel_at,
            'infinity'
        ) as valid_to
    from carried
    inner join subscriptions on carried.subscription_id = subscriptions.subscription_id
),

final as (
    select
        states.subscription_id,
        states.state_seq,
        states.valid_from,
        states.valid_to,
        states.plan_id,
        plans.plan_name,
        plans.bills_overage,
        subscriptions.billing_cycle,
        states.seats,
        states.is_on_initial_plan and subscriptions.price_override is not null
            as is_price_overridden,
        (
            case
                when states.is_on_initial_plan and subscriptions.price_override is not null
                    then subscriptions.price_override
                when subscriptions.billing_cycle = 'annual' then price_books.annual_fee
                else price_books.monthly_fee
            end
        )::numeric(20, 6) as fee_amount,
        greatest(0, states.seats - plans.included_seats) as extra_seats,
        (
            coalesce(price_books.seat_price_monthly, 0)
            * case when subscriptions.billing_cycle = 'annual' then 12 else 1 end
        )::numeric(20, 6) as seat_unit_amount,
        (
            greatest(0, states.seats - plans.included_seats)
            * coalesce(price_books.seat_price_monthly, 0)
            * case when subscriptions.billing_cycle = 'annual' then 12 else 1 end
        )::numeric(20, 6) as seat_amount,
        plans.plan_name || ' (' || subscriptions.billing_cycle || ')' as plan_label
    from with_override as states
    inner join subscriptions on states.subscription_id = subscriptions.subscription_id
    inner join organizations on subscriptions.organization_id = organizations.organization_id
    inner join plans on states.plan_id = plans.plan_id
    inner join price_books
        on
            states.plan_id = price_books.plan_id
            and organizations.currency = price_books.currency
)

select * from final
