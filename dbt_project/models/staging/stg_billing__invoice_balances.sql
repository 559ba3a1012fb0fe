-- What finance needs of an invoice to follow its collection: due amount, dates, status.
with source as (
    select * from {{ source('billing', 'dictamesh_billing_invoices') }}
),

renamed as (
    select
        id as invoice_id,
        number as invoice_number,
        organization_id,
        currency,
        status as invoice_status,
        issued_at,
        due_at,
        paid_at,
        amount_due::numeric(20, 6) as amount_due
    from source
    where status <> 'draft'
)

select * from renamed
