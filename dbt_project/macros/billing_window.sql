{#- The half-open window [window_start, window_end) of billing dates a run builds. A
    production run sets it per session (RatingResource's window_options: PGOPTIONS), read
    when the SQL runs, so a new window leaves dbt's saved parse valid; BILLING_WINDOW_START
    / BILLING_WINDOW_END in the environment pin it in the compiled SQL instead (the unit
    tests' overrides). Neither set: the defaults below. -#}
{% macro window_start() -%}
    {{ window_bound('BILLING_WINDOW_START', 'dictamesh.billing_window_start', '2026-01-01T00:00:00+00:00') }}
{%- endmacro %}

{% macro window_end() -%}
    {{ window_bound('BILLING_WINDOW_END', 'dictamesh.billing_window_end', '2026-01-02T00:00:00+00:00') }}
{%- endmacro %}

{% macro window_bound(env_name, setting, default) -%}
    {%- set pinned = env_var(env_name, '') -%}
    {%- if pinned -%}
        '{{ pinned }}'::timestamptz
    {%- else -%}
        coalesce(nullif(current_setting('{{ setting }}', true), ''), '{{ default }}')::timestamptz
    {%- endif -%}
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
