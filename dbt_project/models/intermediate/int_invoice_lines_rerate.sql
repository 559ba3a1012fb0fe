-- Price corrections of finalized invoices (`billing rerate --apply`, one row each in
-- dictamesh_billing_rerate_adjustments): each goes on the subscription's next
-- unfinalized invoice in the window after the invoice it corrects, as an adjustment line
-- naming that invoice. Once an invoice carrying it is finalized (a finalized adjustment
-- line with its description for the corrected invoice), it is never added again.
with corrections as (
    select * from {{ ref('stg_billing__rerate_adjustments') }}
),

schedule as (
    select * from {{ ref('int_invoice_schedule') }}
    where {{ in_billing_window('billing_date') }}
),

invoices as (
    select * from {{ ref('stg_billing__invoices') }}
),

lines as (
    select * from {{ ref('stg_billing__invoice_line_items') }}
),

carried as (
    select distinct
        lines.adjusts_invoice_id,
        lines.description
    from lines
    inner join invoices on lines.invoice_id = invoices.invoice_id
    where lines.kind = 'adjustment' and invoices.invoice_status <> 'draft'
),

pending as (
    select
        corrections.*,
        corrected.invoice_key as corrected_invoice_key,
        corrected.period_start as corrected_billing_date
    from corrections
    inner join invoices as corrected on corrections.corrected_invoice_id = corrected.invoice_id
    left join carried
        on
            corrections.corrected_invoice_id = carried.adjusts_invoice_id
            and corrections.description = carried.description
    where carried.adjusts_invoice_id is null
),

targets as (
    select distinct on (pending.rerate_adjustment_id)
        schedule.invoice_key,
        pending.*
    from pending
    inner join schedule
        on
            pending.subscription_id = schedule.subscription_id
            and pending.corrected_billing_date < schedule.billing_date
    left join invoices as finalized
        on
            schedule.subscription_id = finalized.subscription_id
            and schedule.billing_date = finalized.period_start
            and finalized.invoice_status <> 'draft'
    where finalized.invoice_id is null
    order by pending.rerate_adjustment_id, schedule.billing_date
),

final as (
    select
        invoice_key,
        'adjustment' as kind,
        rerate_adjustment_id as sort_key,
        description,
        metric,
        1::numeric(24, 6) as quantity,
        amount::numeric(20, 6) as unit_amount,
        amount::numeric(20, 6) as amount,
        period_start,
        period_end,
        '[]'::jsonb as tier_detail,
        corrected_invoice_key as adjusts_invoice_key
    from targets
)

select * from final
