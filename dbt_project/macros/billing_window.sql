{#- The half-open window [window_start, window_end) of billing dates a run builds. -#}
{% macro window_start() -%}
    '{{ var("window_start") }}'::timestamptz
{%- endmacro %}

{% macro window_end() -%}
    '{{ var("window_end") }}'::timestamptz
{%- endmacro %}

{% macro in_billing_window(column) -%}
    ({{ column }} >= {{ window_start() }} and {{ column }} < {{ window_end() }})
{%- endmacro %}

{#- Incremental marts replace exactly their window: rows that no longer exist go too. -#}
{% macro delete_billing_window(column='billing_date') -%}
    {% if is_incremental() %}
        delete from {{ this }} where {{ in_billing_window(column) }}
    {% else %}
        select 1
    {% endif %}
{%- endmacro %}
