-- The invoices whose usage is rated in this run: every invoice of the window with
-- arrears, and each finalized invoice whose usage changed after finalization (its
-- usage period is rated again, so the difference can be billed as an adjustment).
-- A finalized invoice inside the window is such a correction too: a backfill over its
-- billing date must not treat it as a draft and leave its late usage unbilled.
with schedule as (
    select * from {{ ref('int_invoice_schedule') }}
    where has_arrears
),

invoices as (
    select * from {{ ref('stg_billing__invoices') }}
    where invoice_status <> 'draft'
),

adjusted as (
    select distinct invoice_id from {{ ref('stg_billing__usage_adjustments') }}
),

corrections as (
    select
        invoices.subscription_id,
        invoices.period_start,
        invoices.invoice_id as corrected_invoice_id
    from invoices
    inner join adjusted on invoices.invoice_id = adjusted.invoice_id
),

final as (
    select
        schedule.*,
        corrections.corrected_invoice_id
    from schedule
    left join corrections
        on
            schedule.subscription_id = corrections.subscription_id
            and schedule.billing_date = corrections.period_start
    where
        {{ in_billing_window('schedule.billing_date') }}
        or corrections.corrected_invoice_id is not null
)

select * from final
