with source as (
    select * from {{ source('billing', 'dictamesh_billing_rerate_adjustments') }}
),

renamed as (
    select
        id as rerate_adjustment_id,
        subscription_id,
        corrected_invoice_id,
        kind as corrected_kind,
        metric,
        description,
        period_start,
        period_end,
        amount::numeric(20, 6) as amount,
        currency,
        catalog_version,
        created_at
    from source
)

select * from renamed
