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
        credits_applied::numeric(20, 6) as credits_applied
    from source
)

select * from renamed
