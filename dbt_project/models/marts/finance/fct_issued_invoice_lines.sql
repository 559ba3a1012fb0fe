{{ config(tags=['finance']) }}
-- The issued ledger: every line of every finalized invoice (open, paid, uncollectible or
-- void), never a draft, with the dates finance books by: issued_at, and voided_at for an
-- invoice voided later (it stays issued until then; revenue marts reverse it on that
-- date). Lines are immutable once issued (the warehouse refuses changes).
with invoices as (
    select * from {{ ref('stg_billing__invoices') }}
    where invoice_status <> 'draft'
),

lines as (
    select * from {{ ref('stg_billing__invoice_line_items') }}
),

subscriptions as (
    select * from {{ ref('stg_billing__subscriptions') }}
),

organizations as (
    select * from {{ ref('stg_billing__organizations') }}
),

states as (
    select * from {{ ref('int_subscription_states') }}
),

final as (
    select
        lines.invoice_line_item_id,
        invoices.invoice_id,
        invoices.invoice_number,
        lines.line_number,
        invoices.organization_id,
        organizations.organization_external_id,
        invoices.subscription_id,
        subscriptions.subscription_external_id,
        plan.plan_id,
        invoices.currency,
        invoices.invoice_status,
        invoices.period_start as billing_date,
        invoices.issued_at,
        invoices.voided_at,
        lines.kind,
        lines.kind in ('overage', 'adjustment') as is_usage,
        lines.metric,
        lines.description,
        lines.quantity,
        lines.amount,
        coalesce(lines.period_start, invoices.period_start) as service_start,
        coalesce(lines.period_end, invoices.period_end) as service_end,
        lines.adjusts_invoice_id
    from lines
    inner join invoices on lines.invoice_id = invoices.invoice_id
    inner join subscriptions on invoices.subscription_id = subscriptions.subscription_id
    inner join organizations on invoices.organization_id = organizations.organization_id
    -- the plan in effect on the billing date (the last one for a final invoice)
    left join lateral (
        select states.plan_id
        from states
        where
            states.subscription_id = invoices.subscription_id
            and states.valid_from <= invoices.period_start
        order by states.valid_from desc
        limit 1
    ) as plan on true
)

select * from final
