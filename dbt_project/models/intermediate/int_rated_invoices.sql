-- The invoices whose usage is rated in this run: every invoice of the window with
-- arrears, and each finalized invoice whose usage changed after finalization (its
-- usage period is rated again, so the difference can be billed as an adjustment).
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
        schedule.*,
        invoices.invoice_id as corrected_invoice_id
    from schedule
    inner join invoices
        on
            schedule.subscription_id = invoices.subscription_id
            and schedule.billing_date = invoices.period_start
    inner join adjusted on invoices.invoice_id = adjusted.invoice_id
),

final as (
    select
        *,
        null::bigint as corrected_invoice_id
    from schedule
    where {{ in_billing_window('billing_date') }}
    union all
    select * from corrections
    where not {{ in_billing_window('billing_date') }}
)

select * from final
