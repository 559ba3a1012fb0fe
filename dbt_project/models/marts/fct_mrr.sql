{{ config(tags=['billing_daily']) }}
-- Monthly recurring revenue per organization and calendar month (UTC), measured at the
-- month's last instant: the fee and extra seats in effect then, annual amounts / 12,
-- list prices (or the custom override) before promotions and tax. Movements compare
-- with the month before: new, expansion, contraction, churned, reactivation. Amounts in
-- the invoice currency and in USD through the reporting FX table (never used to bill).
with states as (
    select * from {{ ref('int_subscription_states') }}
),

subscriptions as (
    select * from {{ ref('stg_billing__subscriptions') }}
),

organizations as (
    select * from {{ ref('stg_billing__organizations') }}
),

fx_rates as (
    select * from {{ ref('stg_billing__fx_rates') }}
),

firsts as (
    select
        organization_id,
        min(started_at) as first_start
    from subscriptions
    group by organization_id
),

months as (
    select
        organizations.organization_id,
        organizations.currency,
        month_start::timestamptz as month_start
    from organizations
    inner join firsts on organizations.organization_id = firsts.organization_id
    cross join lateral generate_series(
        date_trunc('month', firsts.first_start, 'UTC'),
        date_trunc('month', greatest(now(), firsts.first_start), 'UTC'),
        interval '1 month'
    ) as month_start
),

snapshots as (
    select
        months.organization_id,
        months.currency,
        months.month_start,
        states.plan_id,
        coalesce(
            (states.fee_amount + states.seat_amount)
            / case when states.billing_cycle = 'annual' then 12 else 1 end,
            0
        ) as mrr
    from months
    left join subscriptions on months.organization_id = subscriptions.organization_id
    left join states
        on
            subscriptions.subscription_id = states.subscription_id
            and states.valid_from
            <= (months.month_start at time zone 'UTC' + interval '1 month') at time zone 'UTC'
            - interval '1 microsecond'
            and states.valid_to
            > (months.month_start at time zone 'UTC' + interval '1 month') at time zone 'UTC'
            - interval '1 microsecond'
),

per_month as (
    select
        organization_id,
        currency,
        month_start,
        max(plan_id) as plan_id,
        sum(mrr)::numeric(20, 6) as mrr
    from snapshots
    group by organization_id, currency, month_start
),

with_usd as (
    select
        per_month.*,
        round(per_month.mrr * rate.usd_per_unit, 6)::numeric(20, 6) as mrr_usd,
        lag(per_month.mrr, 1, 0) over (
            partition by per_month.organization_id order by per_month.month_start
        ) as previous_mrr,
        coalesce(max(per_month.mrr) over (
            partition by per_month.organization_id
            order by per_month.month_start
            rows between unbounded preceding and 1 preceding
        ), 0) as earlier_peak_mrr
    from per_month
    left join lateral (
        select fx_rates.usd_per_unit
        from fx_rates
        where
            fx_rates.currency = per_month.currency
            and fx_rates.valid_from <= (per_month.month_start at time zone 'UTC')::date
        order by fx_rates.valid_from desc
        limit 1
    ) as rate on true
),

final as (
    select
        organization_id,
        (month_start at time zone 'UTC')::date as month,
        currency,
        plan_id,
        mrr,
        previous_mrr::numeric(20, 6) as previous_mrr,
        (mrr - previous_mrr)::numeric(20, 6) as mrr_change,
        mrr_usd,
        (
            mrr_usd
            - coalesce(lag(mrr_usd, 1) over (
                partition by organization_id order by month_start
            ), 0)
        )::numeric(20, 6) as mrr_change_usd,
        case
            when previous_mrr = 0 and mrr > 0 and earlier_peak_mrr = 0 then 'new'
            when previous_mrr = 0 and mrr > 0 then 'reactivation'
            when previous_mrr > 0 and mrr = 0 then 'churned'
            when mrr > previous_mrr then 'expansion'
            when mrr < previous_mrr then 'contraction'
            else 'unchanged'
        end as movement
    from with_usd
    where mrr > 0 or previous_mrr > 0
)

select * from final
