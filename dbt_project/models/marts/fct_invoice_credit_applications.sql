-- Which credit grant each draft invoice uses, and how much (docs/invoice-marts.md).
with applications as (
    select * from {{ ref('int_invoice_credit_applications') }}
),

totals as (
    select * from {{ ref('int_invoice_totals') }}
),

final as (
    select
        applications.invoice_key,
        applications.application_number,
        applications.credit_id,
        applications.balance_invoice_key,
        applications.amount,
        totals.billing_date
    from applications
    inner join totals on applications.invoice_key = totals.invoice_key
)

select * from final
