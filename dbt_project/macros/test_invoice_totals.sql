{#- An invoice's subtotal is the sum of its lines and its total is
    max(0, subtotal - discount) + tax (docs/rate-card.md: line rounding, discounts, tax;
    negative subtotal).
    Fails with the invoices that do not add up. -#}
{% test invoice_totals_add_up(model, lines_model) %}

with line_sums as (
    select invoice_key, sum(amount) as line_total
    from {{ lines_model }}
    group by invoice_key
)

select invoices.invoice_key
from {{ model }} as invoices
left join line_sums on invoices.invoice_key = line_sums.invoice_key
where
    invoices.subtotal <> coalesce(line_sums.line_total, 0)
    or invoices.total <> greatest(invoices.subtotal - invoices.discount, 0) + invoices.tax
    or invoices.amount_due <> invoices.total - invoices.credits_applied

{% endtest %}

{#- Money that must be there and never negative (amount due, tax, discount, credits):
    a null amount fails too, so the column needs no not_null test of its own. -#}
{% test non_negative(model, column_name) %}

select {{ column_name }} from {{ model }} where {{ column_name }} < 0 or {{ column_name }} is null

{% endtest %}
