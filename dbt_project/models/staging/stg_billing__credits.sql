with source as (
    select * from {{ source('billing', 'dictamesh_billing_credits') }}
),

renamed as (
    select
        id as credit_entry_id,
        organization_id,
        entry_type,
        credit_type,
        coalesce(grant_id, id) as grant_id,
        invoice_id,
        amount::numeric(20, 6) as amount,
        currency,
        expires_at,
        created_at
    from source
)

select * from renamed
