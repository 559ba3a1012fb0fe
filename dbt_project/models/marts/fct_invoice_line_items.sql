-- Draft invoice lines for the billing dates in [window_start, window_end); each run
-- replaces exactly its window (docs/invoice-marts.md is the contract).
with lines as (
    select * from {{ ref('int_invoice_lines') }}
),

final as (
    select
        invoice_key,
        line_number,
        kind,
        description,
        metric,
        quantity,
        unit_amount,
        amount,
        period_start,
        period_end,
        tier_detail,
        adjusts_invoice_key,
        billing_date,
        currency
    from lines
)

select * from final
