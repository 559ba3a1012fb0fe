-- One row per invoice a subscription gets, up to the window end: each billing date
-- (period start), and an immediate cancellation's final invoice dated cancel_at.
-- An invoice holds advance lines for the period it opens and arrears (proration,
-- overage) for [arrears_start, arrears_end); a subscription's first invoice has no
-- arrears, and a cancellation on a billing date leaves only the arrears (rule cancellation).
with subscriptions as (
    select * from {{ ref('stg_billing__subscriptions') }}
),

organizations as (
    select * from {{ ref('stg_billing__organizations') }}
),

calendar as (
    select * from {{ ref('int_billing_calendar') }}
),

regular as (
    select
        calendar.subscription_id,
        calendar.period_start as billing_date,
        'regular' as invoice_type,
        (
            calendar.is_fee_date
            and coalesce(subscriptions.cancel_at <> calendar.period_start, true)
        ) as has_advance_lines,
        lag(calendar.period_start) over (
            partition by calendar.subscription_id order by calendar.period_index
        ) as arrears_start,
        calendar.period_start as arrears_end,
        -- quotas and the storage average divide by the whole period the arrears cover
        calendar.period_start as arrears_period_end,
        case
            when calendar.is_fee_date then calendar.fee_period_end else calendar.period_end
        end as period_end
    from calendar
    inner join subscriptions on calendar.subscription_id = subscriptions.subscription_id
    where
        calendar.period_start < {{ window_end() }}
        and calendar.period_start <= coalesce(subscriptions.cancel_at, 'infinity')
),

final_invoices as (
    select
        calendar.subscription_id,
        subscriptions.cancel_at as billing_date,
        'final' as invoice_type,
        false as has_advance_lines,
        calendar.period_start as arrears_start,
        subscriptions.cancel_at as arrears_end,
        calendar.period_end as arrears_period_end,
        calendar.period_end
    from calendar
    inner join subscriptions on calendar.subscription_id = subscriptions.subscription_id
    where
        subscriptions.cancel_at > calendar.period_start
        and subscriptions.cancel_at < calendar.period_end
        and subscriptions.cancel_at < {{ window_end() }}
),

invoices as (
    select * from regular
    union all
    select * from final_invoices
),

final as (
    select
        subscriptions.subscription_external_id
        || '/'
        || to_char(invoices.billing_date at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
            as invoice_key,
        invoices.subscription_id,
        subscriptions.subscription_external_id,
        subscriptions.organization_id,
        organizations.organization_external_id,
        organizations.currency,
        invoices.billing_date,
        invoices.period_end,
        invoices.invoice_type,
        row_number() over (
            partition by invoices.subscription_id order by invoices.billing_date
        )::integer as invoice_sequence,
        invoices.has_advance_lines,
        invoices.arrears_start is not null as has_arrears,
        invoices.arrears_start,
        invoices.arrears_end,
        invoices.arrears_period_end
    from invoices
    inner join subscriptions on invoices.subscription_id = subscriptions.subscription_id
    inner join organizations on subscriptions.organization_id = organizations.organization_id
)

select * from final
