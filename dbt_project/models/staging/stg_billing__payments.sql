with source as (
    select * from {{ source('billing', 'dictamesh_billing_payments') }}
),

renamed as (
    select
        id as payment_id,
        invoice_id,
        attempt,
        provider,
        status as payment_status,
        currency,
        failure_code,
        decline_code,
        created_at as attempted_at,
        amount::numeric(20, 6) as amount
    from source
)

select * from renamed
