{#- The half-open window [window_start, window_end) of billing dates a run builds, from
    the environment (RatingResource.window_env): it changes every run, and a changed
    --vars would make dbt re-parse the whole project each time. -#}
{% macro window_start() -%}
    '{{ env_var("BILLING_WINDOW_START", "2026-01-01T00:00:00+00:00") }}'::timestamptz
{%- endmacro %}

{% macro window_end() -%}
    '{{ env_var("BILLING_WINDOW_END", "2026-01-02T00:00:00+00:00") }}'::timestamptz
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
