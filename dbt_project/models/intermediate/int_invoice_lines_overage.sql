-- Overage (docs/rate-card.md: overage; six decimals, inclusive tier bounds,
-- full monthly quota, free plan, cancellation), and usage lines at zero amount
-- for invoices without overage. Quotas are prorated by the seconds each plan was
-- active in the usage period; storage is the average over every
-- hour of the whole period (missing hours count 0). The overage quantity in billing
-- units is rounded to 6 decimals once, after the subtraction, from one exact division:
-- (used x h - sum(quota x seconds)) / (P x unit size), h = P for sums and 3,600 for
-- averages (usage_seconds, the warehouse's one definition), P = seconds of the period.
-- Graduated tiers price each slice at its tier, volume tiers price the whole quantity
-- at the tier its total falls in (bounds inclusive); with tiered_pricing off everything
-- is priced at the first tier.
with schedule as (
    select
        *,
        {{ seconds_between('arrears_start', 'arrears_period_end') }} as period_seconds
    from {{ ref('int_rated_invoices') }}
),

subscriptions as (
    select * from {{ ref('stg_billing__subscriptions') }}
),

states as (
    select * from {{ ref('int_subscription_states') }}
),

quotas as (
    select * from {{ ref('stg_billing__plan_quotas') }}
),

metrics as (
    select * from {{ ref('stg_billing__metrics') }}
),

tiers as (
    select * from {{ ref('stg_billing__pricing_tiers') }}
),

usage as (
    select * from {{ ref('int_usage_by_invoice') }}
),

segments as (
    select
        schedule.invoice_key,
        states.plan_id,
        states.bills_overage,
        {{ seconds_between(
            'greatest(states.valid_from, schedule.arrears_start)',
            'least(states.valid_to, schedule.arrears_end)'
        ) }} as active_seconds
    from schedule
    inner join states
        on
            schedule.subscription_id = states.subscription_id
            and schedule.arrears_end > states.valid_from
            and schedule.arrears_start < states.valid_to
),

-- rule free plan: no overage when the plan was free for the whole usage period
billable as (
    select invoice_key
    from segments
    group by invoice_key
    having bool_or(bills_overage)
),

prorated_quotas as (
    select
        segments.invoice_key,
        quotas.metric,
        sum(quotas.included_quantity * segments.active_seconds) as quota_seconds
    from segments
    inner join quotas on segments.plan_id = quotas.plan_id
    group by segments.invoice_key, quotas.metric
),

-- every metric the period used or the plan includes, so a zero invoice can show both
measured as (
    select
        invoice_key,
        metric
    from usage
    union
    select
        invoice_key,
        metric
    from prorated_quotas
),

overage as (
    select
        schedule.invoice_key,
        schedule.currency,
        schedule.arrears_start,
        schedule.arrears_end,
        subscriptions.pricing_mode,
        measured.metric,
        metrics.metric_name,
        metrics.billing_unit,
        case measured.metric
            when 'api_calls' then 1
            when 'storage' then 2
            when 'transfer' then 3
            when 'query_processing' then 4
            else 5
        end as sort_key,
        billable.invoice_key is not null as bills_overage,
        round(
            {{ usage_seconds(
                'coalesce(usage.used_quantity, 0)', 'metrics.aggregation', 'schedule.period_seconds'
            ) }}
            / (schedule.period_seconds * metrics.unit_size),
            6
        ) as used_units,
        round(
            coalesce(prorated_quotas.quota_seconds, 0)
            / (schedule.period_seconds * metrics.unit_size),
            6
        ) as included_units,
        round(
            (
                {{ usage_seconds(
                    'coalesce(usage.used_quantity, 0)',
                    'metrics.aggregation',
                    'schedule.period_seconds'
                ) }}
                - coalesce(prorated_quotas.quota_seconds, 0)
            )
            / (
                schedule.period_seconds
                * metrics.unit_size
            ),
            6
        ) as quantity
    from schedule
    inner join measured on schedule.invoice_key = measured.invoice_key
    inner join subscriptions on schedule.subscription_id = subscriptions.subscription_id
    inner join metrics on measured.metric = metrics.metric
    left join billable on schedule.invoice_key = billable.invoice_key
    left join usage
        on measured.invoice_key = usage.invoice_key and measured.metric = usage.metric
    left join prorated_quotas
        on
            measured.invoice_key = prorated_quotas.invoice_key
            and measured.metric = prorated_quotas.metric
),

positive as (
    select * from overage
    where quantity > 0 and bills_overage
),

-- an invoice without overage shows each metric's usage against its included quantity
-- at zero amount; int_invoice_lines keeps these only on an invoice with no other line
within_quota as (
    select * from overage
    where invoice_key not in (select positive.invoice_key from positive)
),

slices as (
    select
        positive.invoice_key,
        positive.metric,
        tiers.tier,
        tiers.unit_price,
        case
            when not {{ var('tiered_pricing') }} then positive.quantity
            when positive.pricing_mode = 'volume' then positive.quantity
            else
                least(positive.quantity, coalesce(tiers.upper_bound, positive.quantity))
                - tiers.lower_bound
        end as slice_quantity
    from positive
    inner join tiers
        on positive.metric = tiers.metric and positive.currency = tiers.currency
    where
        case
            when not {{ var('tiered_pricing') }} then tiers.tier = 1
            when positive.pricing_mode = 'volume'
                then
                    positive.quantity > tiers.lower_bound
                    and (tiers.upper_bound is null or positive.quantity <= tiers.upper_bound)
            else positive.quantity > tiers.lower_bound
        end
),

priced as (
    select
        *,
        round(slice_quantity * unit_price, 6) as slice_amount
    from slices
),

overage_lines as (
    select
        positive.invoice_key,
        'overage' as kind,
        positive.sort_key,
        positive.metric_name || ' overage' as description,
        positive.metric,
        positive.quantity::numeric(24, 6) as quantity,
        case when count(*) = 1 then max(priced.unit_price) end::numeric(20, 6) as unit_amount,
        sum(priced.slice_amount)::numeric(20, 6) as amount,
        positive.arrears_start as period_start,
        positive.arrears_end as period_end,
        jsonb_agg(
            jsonb_build_object(
                'tier', priced.tier,
                'quantity', priced.slice_quantity::text,
                'unit_amount', priced.unit_price::text,
                'amount', priced.slice_amount::text
            )
            order by priced.tier
        ) as tier_detail
    from positive
    inner join priced
        on positive.invoice_key = priced.invoice_key and positive.metric = priced.metric
    group by
        positive.invoice_key,
        positive.sort_key,
        positive.metric,
        positive.metric_name,
        positive.quantity,
        positive.arrears_start,
        positive.arrears_end
),

usage_lines as (
    select
        invoice_key,
        'usage' as kind,
        sort_key,
        metric_name || ': ' || trim_scale(used_units)::text || ' of '
        || trim_scale(included_units)::text || ' included'
        || coalesce(' (' || billing_unit || ')', '') as description,
        metric,
        used_units::numeric(24, 6) as quantity,
        0::numeric(20, 6) as unit_amount,
        0::numeric(20, 6) as amount,
        arrears_start as period_start,
        arrears_end as period_end,
        jsonb_build_array(jsonb_build_object(
            'used', trim_scale(used_units)::text,
            'included', trim_scale(included_units)::text
        )) as tier_detail
    from within_quota
),

final as (
    select * from overage_lines
    union all
    select * from usage_lines
)

select * from final
