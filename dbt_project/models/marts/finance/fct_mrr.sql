{{ config(tags=['billing_daily']) }}
-- Month-end MRR per organization, derived from fct_mrr_movements only: the MRR at the
-- month's end is the sum of every movement before it, so last month's MRR plus this
-- month's movements is this month's MRR by construction (and the mrr_rolls_forward
-- test checks it). USD is the sum of the movements' USD amounts, each at the reporting
-- rate of its effective date, so the USD figures roll forward exactly too.
with movements as (
    select * from {{ ref('fct_mrr_movements') }}
),

-- months run on to the current one (var mrr_as_of, an SQL timestamp, pins "now" in the
-- unit test)
bounds as (
    select
        organization_id,
        min(currency) as currency,
        min(month) as first_month,
        greatest(
            max(month),
            (
                date_trunc('month', {{ var('mrr_as_of', 'now()') }}, 'UTC') at time zone 'UTC'
            )::date
        ) as last_month
    from movements
    group by organization_id
),

months as (
    select
        bounds.organization_id,
        bounds.currency,
        month_start::date as month
    from bounds
    cross join lateral generate_series(
        bounds.first_month, bounds.last_month, interval '1 month'
    ) as month_start
),

per_month as (
    select
        months.organization_id,
        months.month,
        months.currency,
        coalesce(sum(movements.amount), 0) as net_change,
        coalesce(sum(movements.amount_usd), 0) as net_change_usd,
        coalesce(sum(movements.amount) filter (where movements.movement_type = 'new'), 0)
            as new_mrr,
        coalesce(sum(movements.amount) filter (where movements.movement_type = 'expansion'), 0)
            as expansion_mrr,
        coalesce(sum(movements.amount) filter (where movements.movement_type = 'contraction'), 0)
            as contraction_mrr,
        coalesce(sum(movements.amount) filter (where movements.movement_type = 'churned'), 0)
            as churned_mrr,
        coalesce(sum(movements.amount) filter (where movements.movement_type = 'reactivation'), 0)
            as reactivation_mrr,
        (array_agg(movements.plan_id order by movements.effective_at desc))[1] as last_plan_id,
        count(movements.effective_at) as movements
    from months
    left join movements
        on
            months.organization_id = movements.organization_id
            and months.month = movements.month
    group by months.organization_id, months.month, months.currency
),

running as (
    select
        *,
        sum(net_change) over (
            partition by organization_id order by month
        ) as mrr,
        sum(net_change_usd) over (
            partition by organization_id order by month
        ) as mrr_usd,
        -- the plan of the latest month with a movement (null once churned)
        max(case when movements > 0 then month end) over (
            partition by organization_id order by month
        ) as plan_month
    from per_month
),

with_plan as (
    select
        running.*,
        first_value(running.last_plan_id) over (
            partition by running.organization_id, running.plan_month order by running.month
        ) as plan_id,
        coalesce(lag(running.mrr) over (
            partition by running.organization_id order by running.month
        ), 0) as previous_mrr,
        coalesce(max(running.mrr) over (
            partition by running.organization_id
            order by running.month
            rows between unbounded preceding and 1 preceding
        ), 0) as earlier_peak_mrr
    from running
),

final as (
    select
        organization_id,
        month,
        currency,
        case when mrr > 0 then plan_id end as plan_id,
        mrr::numeric(20, 6) as mrr,
        previous_mrr::numeric(20, 6) as previous_mrr,
        net_change::numeric(20, 6) as mrr_change,
        new_mrr::numeric(20, 6) as new_mrr,
        expansion_mrr::numeric(20, 6) as expansion_mrr,
        contraction_mrr::numeric(20, 6) as contraction_mrr,
        churned_mrr::numeric(20, 6) as churned_mrr,
        reactivation_mrr::numeric(20, 6) as reactivation_mrr,
        mrr_usd::numeric(20, 6) as mrr_usd,
        net_change_usd::numeric(20, 6) as mrr_change_usd,
        case
            when previous_mrr = 0 and mrr > 0 and earlier_peak_mrr = 0 then 'new'
            when previous_mrr = 0 and mrr > 0 then 'reactivation'
            when previous_mrr > 0 and mrr = 0 then 'churned'
            when mrr > previous_mrr then 'expansion'
            when mrr < previous_mrr then 'contraction'
            else 'unchanged'
        end as movement
    from with_plan
    where mrr > 0 or previous_mrr > 0 or net_change <> 0 or movements > 0
)

select * from final
