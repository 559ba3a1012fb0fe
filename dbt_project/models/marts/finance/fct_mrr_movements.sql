{{ config(tags=['billing_daily']) }}
-- MRR movements on the instant they take effect: one row per organization and instant its
-- recurring amount changed (a start, a plan or seat change, a cancellation). MRR of a
-- subscription state is its fee plus extra seats at list (or override) price, annual
-- amounts / 12, rounded to 6 decimals once per state so movements add up exactly.
-- Usage (overage) is not recurring and never counts (DECISIONLOG.md).
with states as (
    select * from {{ ref('int_subscription_states') }}
),

subscriptions as (
    select * from {{ ref('stg_billing__subscriptions') }}
),

organizations as (
    select * from {{ ref('stg_billing__organizations') }}
),

state_mrr as (
    select
        subscriptions.organization_id,
        states.plan_id,
        states.valid_from,
        states.valid_to,
        round(
            (states.fee_amount + states.seat_amount)
            / case when states.billing_cycle = 'annual' then 12 else 1 end,
            6
        ) as mrr
    from states
    inner join subscriptions on states.subscription_id = subscriptions.subscription_id
    where states.valid_from < states.valid_to
),

instants as (
    select
        organization_id,
        valid_from as effective_at
    from state_mrr
    union
    select
        organization_id,
        valid_to as effective_at
    from state_mrr
    where valid_to < 'infinity'
),

timeline as (
    select
        instants.organization_id,
        instants.effective_at,
        coalesce(sum(state_mrr.mrr), 0) as mrr,
        max(state_mrr.plan_id) as plan_id
    from instants
    left join state_mrr
        on
            instants.organization_id = state_mrr.organization_id
            and instants.effective_at >= state_mrr.valid_from
            and instants.effective_at < state_mrr.valid_to
    group by instants.organization_id, instants.effective_at
),

changes as (
    select
        *,
        lag(mrr, 1, 0) over (
            partition by organization_id order by effective_at
        ) as previous_mrr,
        coalesce(max(mrr) over (
            partition by organization_id
            order by effective_at
            rows between unbounded preceding and 1 preceding
        ), 0) as earlier_peak_mrr
    from timeline
),

movements as (
    select
        changes.organization_id,
        changes.effective_at,
        organizations.currency,
        changes.plan_id,
        changes.previous_mrr,
        changes.mrr,
        changes.mrr - changes.previous_mrr as amount,
        case
            when changes.previous_mrr = 0 and changes.earlier_peak_mrr = 0 then 'new'
            when changes.previous_mrr = 0 then 'reactivation'
            when changes.mrr = 0 then 'churned'
            when changes.mrr > changes.previous_mrr then 'expansion'
            else 'contraction'
        end as movement_type
    from changes
    inner join organizations on changes.organization_id = organizations.organization_id
    where changes.mrr <> changes.previous_mrr
),

final as (
    select
        movements.organization_id,
        movements.effective_at,
        (date_trunc('month', movements.effective_at, 'UTC') at time zone 'UTC')::date as month,
        movements.movement_type,
        movements.currency,
        movements.plan_id,
        movements.previous_mrr::numeric(20, 6) as previous_mrr,
        movements.mrr::numeric(20, 6) as mrr,
        movements.amount::numeric(20, 6) as amount,
        round(movements.amount * rate.usd_per_unit, 6)::numeric(20, 6) as amount_usd,
        rate.usd_per_unit
    from movements
    {{ reporting_rate('movements.currency', 'movements.effective_at') }}
)

select * from final
