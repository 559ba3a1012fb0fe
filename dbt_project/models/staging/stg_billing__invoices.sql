with source as (
    select * from {{ source('billing', 'dictamesh_billing_invoices') }}
),

renamed as (
    select
        id as invoice_id,
        number as invoice_number,
        organization_id,
        subscription_id,
        period_start,
        status as invoice_status,
        total::numeric(20, 6) as total,
        credits_applied::numeric(20, 6) as credits_applied,
        invoice_key,
        period_end,
        currency,
        subtotal::numeric(20, 6) as subtotal,
        discount::numeric(20, 6) as discount,
        tax::numeric(20, 6) as tax,
        issued_at,
        voided_at
    from source
)

select * from renamed
