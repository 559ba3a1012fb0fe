-- Usage that arrived after its invoice was finalized. That invoice's usage period is
-- rated again (int_rated_invoices); per changed metric, the difference between its
-- overage now and what was billed for it (its overage line plus earlier adjustments)
-- goes on the subscription's next unfinalized invoice in the window, as an adjustment
-- line naming the invoice it corrects. Re-running after that invoice is finalized finds
-- nothing left to adjust.
with rated as (
    select * from {{ ref('int_rated_invoices') }}
    where corrected_invoice_id is not null
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

overage as (
    select * from {{ ref('int_invoice_lines_overage') }}
),

metrics as (
    select * from {{ ref('stg_billing__metrics') }}
),

currencies as (
    select * from {{ ref('stg_billing__currencies') }}
),

changed as (
    select distinct
        invoice_id,
        metric
    from {{ ref('stg_billing__usage_adjustments') }}
),

billed as (
    select
        coalesce(adjusts_invoice_id, invoice_id) as invoice_id,
        metric,
        sum(amount) as billed_amount
    from lines
    where
        (kind = 'overage' and adjusts_invoice_id is null)
        or kind = 'adjustment'
    group by coalesce(adjusts_invoice_id, invoice_id), metric
),

deltas as (
    select
        rated.invoice_key as corrected_invoice_key,
        invoices.invoice_number as corrected_number,
        rated.subscription_id,
        rated.billing_date as corrected_billing_date,
        rated.arrears_start,
        rated.arrears_end,
        changed.metric,
        metrics.metric_name,
        round(coalesce(overage.amount, 0), currencies.minor_units)
        - coalesce(billed.billed_amount, 0) as delta
    from rated
    inner join changed on rated.corrected_invoice_id = changed.invoice_id
    inner join invoices on rated.corrected_invoice_id = invoices.invoice_id
    inner join metrics on changed.metric = metrics.metric
    inner join currencies on rated.currency = currencies.currency
    left join overage
        on rated.invoice_key = overage.invoice_key and changed.metric = overage.metric
    left join billed
        on rated.corrected_invoice_id = billed.invoice_id and changed.metric = billed.metric
),

targets as (
    select distinct on (deltas.corrected_invoice_key, deltas.metric)
        schedule.invoice_key,
        deltas.*
    from deltas
    inner join schedule
        on
            deltas.subscription_id = schedule.subscription_id
            and deltas.corrected_billing_date < schedule.billing_date
    left join invoices as finalized
        on
            schedule.subscription_id = finalized.subscription_id
            and schedule.billing_date = finalized.period_start
            and finalized.invoice_status <> 'draft'
    where deltas.delta <> 0 and finalized.invoice_id is null
    order by deltas.corrected_invoice_key, deltas.metric, schedule.billing_date
),

final as (
    select
        invoice_key,
        'adjustment' as kind,
        0 as sort_key,
        'Usage correction: ' || metric_name || ' (' || corrected_number || ')' as description,
        metric,
        1::numeric(24, 6) as quantity,
        delta::numeric(20, 6) as unit_amount,
        delta::numeric(20, 6) as amount,
        arrears_start as period_start,
        arrears_end as period_end,
        '[]'::jsonb as tier_detail,
        corrected_invoice_key as adjusts_invoice_key
    from targets
)

select * from final
