with source as (
    select * from {{ source('billing', 'dictamesh_billing_payment_ledger') }}
),

renamed as (
    select
        id as ledger_entry_id,
        organization_id,
        invoice_id,
        payment_id,
        credit_note_id,
        entry_type,
        currency,
        occurred_at,
        amount::numeric(20, 6) as amount
    from source
)

select * from renamed
