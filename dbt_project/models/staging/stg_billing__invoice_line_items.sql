with source as (
    select * from {{ source('billing', 'dictamesh_billing_invoice_line_items') }}
),

renamed as (
    select
        id as invoice_line_item_id,
        invoice_id,
        line_number,
        kind,
        metric,
        amount::numeric(20, 6) as amount,
        adjusts_invoice_id,
        description,
        quantity::numeric(24, 6) as quantity,
        unit_amount::numeric(20, 6) as unit_amount,
        period_start,
        period_end
    from source
)

select * from renamed
