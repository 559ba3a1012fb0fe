{{ config(tags=['billing_daily']) }}
-- Annual recurring revenue: MRR x 12 per organization and month, same movements.
with mrr as (
    select * from {{ ref('fct_mrr') }}
),

final as (
    select
        organization_id,
        month,
        currency,
        plan_id,
        (mrr * 12)::numeric(20, 6) as arr,
        (mrr_usd * 12)::numeric(20, 6) as arr_usd,
        (mrr_change_usd * 12)::numeric(20, 6) as arr_change_usd,
        movement
    from mrr
)

select * from final
