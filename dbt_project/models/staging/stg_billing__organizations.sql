with source as (
    select * from {{ source('billing', 'dictamesh_billing_organizations') }}
),

renamed as (
    select
        id as organization_id,
        external_id as organization_external_id,
        name as organization_name,
        email as billing_email,
        currency,
        locale,
        tax_rate::numeric(9, 6) as tax_rate,
        tax_exempt as is_tax_exempt,
        status as organization_status,
        created_at
    from source
)

select * from renamed
