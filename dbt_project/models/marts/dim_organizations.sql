{{ config(materialized='view') }}
-- Organizations with their billing profile and the subscription active now (if any).
with organizations as (
    select * from {{ ref('stg_billing__organizations') }}
),

subscriptions as (
    select * from {{ ref('stg_billing__subscriptions') }}
),

current_subscription as (
    select distinct on (organization_id)
        organization_id,
        subscription_id,
        subscription_external_id,
        plan_id,
        billing_cycle,
        seats
    from subscriptions
    where started_at <= now() and coalesce(cancel_at, 'infinity') > now()
    order by organization_id asc, started_at desc
),

final as (
    select
        organizations.organization_id,
        organizations.organization_external_id,
        organizations.organization_name,
        organizations.billing_email,
        organizations.currency,
        organizations.locale,
        organizations.tax_rate,
        organizations.is_tax_exempt,
        organizations.organization_status,
        current_subscription.subscription_id as current_subscription_id,
        current_subscription.subscription_external_id as current_subscription_external_id,
        current_subscription.plan_id as current_plan_id,
        current_subscription.billing_cycle as current_billing_cycle,
        current_subscription.seats as current_seats,
        organizations.created_at
    from organizations
    left join current_subscription
        on organizations.organization_id = current_subscription.organization_id
)

select * from final
