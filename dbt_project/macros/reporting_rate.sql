{#- `left join lateral ... as rate`: the reporting FX rate (USD per unit) of `currency`
    in effect on the UTC day of `instant` (dictamesh_billing_fx_rates, for MRR and
    revenue reporting only; never used to bill). Columns: rate.usd_per_unit. -#}
{% macro reporting_rate(currency, instant) %}
    left join lateral (
        select fx_rates.usd_per_unit
        from {{ ref('stg_billing__fx_rates') }} as fx_rates
        where
            fx_rates.currency = {{ currency }}
            and fx_rates.valid_from <= ({{ instant }} at time zone 'UTC')::date
        order by fx_rates.valid_from desc
        limit 1
    ) as rate on true
{% endmacro %}
