{#- The half-open window [window_start, window_end) of billing dates a run builds. A
    production run sets it per session (RatingResource's window_options: PGOPTIONS), read
    when the SQL runs, so a new window leaves dbt's saved parse valid; BILLING_WINDOW_START
    / BILLING_WINDOW_END in the environment pin it in the compiled SQL instead (the unit
    tests' overrides). Neither set: the run fails, naming how to give one. There is no
    default window: a run without one would delete and rebuild the drafts of whatever day
    the default named. -#}
{% macro window_start() -%}
    {{ window_bound('BILLING_WINDOW_START', 'dictamesh.billing_window_start') }}
{%- endmacro %}

{% macro window_end() -%}
    {{ window_bound('BILLING_WINDOW_END', 'dictamesh.billing_window_end') }}
{%- endmacro %}

{#- How to give a window, in the error a run without one fails with. -#}
{% macro billing_window_missing() -%}
    no billing window: materialize the Dagster asset billing_invoice_models for a
    partition (or run billing simulate), or set both session settings for dbt, e.g.
    PGOPTIONS="-c dictamesh.billing_window_start=2026-11-01T00:00:00Z
    -c dictamesh.billing_window_end=2026-11-02T00:00:00Z" dbt build
{%- endmacro %}

{#- Unset, the bound is the message above cast to a timestamp, so the query fails with
    "invalid input syntax for type timestamp with time zone: "no billing window: ..."" -#}
{% macro window_bound(env_name, setting) -%}
    {%- set pinned = env_var(env_name, '') -%}
    {%- if pinned -%}
        '{{ pinned }}'::timestamptz
    {%- else -%}
        coalesce(
            nullif(current_setting('{{ setting }}', true), ''),
            '{{ billing_window_missing().split() | join(' ') }}'
        )::timestamptz
    {%- endif -%}
{%- endmacro %}

{% macro in_billing_window(column) -%}
    ({{ column }} >= {{ window_start() }} and {{ column }} < {{ window_end() }})
{%- endmacro %}

{#- Incremental marts replace exactly their window: rows that no longer exist go too.
    Without a window the model fails here, before it deletes or builds anything. -#}
{% macro delete_billing_window(column='billing_date') -%}
    {% if not (env_var('BILLING_WINDOW_START', '') and env_var('BILLING_WINDOW_END', '')) %}
        do $check$
        begin
            if coalesce(current_setting('dictamesh.billing_window_start', true), '') = ''
                or coalesce(current_setting('dictamesh.billing_window_end', true), '') = ''
            then
                raise exception '{{ billing_window_missing().split() | join(' ') }}';
            end if;
        end
        $check$;
    {% endif %}
    {% if is_incremental() %}
        delete from {{ this }} where {{ in_billing_window(column) }}
    {% else %}
        select 1
    {% endif %}
{%- endmacro %}
