{#- The billing calendar lives in the warehouse, as SQL functions (migration
    0011_billing_calendar): these macros compile to calls of them, and the Python that
    needs a period now (quota thresholds, cancellation at period end, renewals) queries
    the same functions, so both always agree. In UTC; month-end anchors clamp and return:
    Jan 31 -> Feb 28/29 -> Mar 31 -> Apr 30 (docs/rate-card.md). Immutable plain SQL,
    which the planner inlines. -#}

{#- `ts` moved by whole months, clamped to the month's last day. -#}
{% macro add_months_utc(ts, months) -%}
    dictamesh_billing_add_months({{ ts }}, {{ months }})
{%- endmacro %}

{#- k of the monthly period [anchor + k months, anchor + k + 1 months) holding `ts`. -#}
{% macro period_index_utc(anchor, ts) -%}
    dictamesh_billing_period_index({{ anchor }}, {{ ts }})
{%- endmacro %}

{#- Period k as a row source for a lateral join: period_start, period_end,
    fee_period_start, fee_period_end (the term year on annual plans), is_fee_date. -#}
{% macro billing_period(anchor, billing_cycle, period_index) -%}
    dictamesh_billing_period({{ anchor }}, {{ billing_cycle }}, {{ period_index }})
{%- endmacro %}

{#- A period's usage as quantity x seconds, comparable with quota x seconds: averaged
    metrics (storage, GB-hours) count 3,600 s per stored hour, missing hours as 0. -#}
{% macro usage_seconds(total, aggregation, period_seconds) -%}
    dictamesh_billing_usage_seconds({{ total }}, {{ aggregation }}, {{ period_seconds }})
{%- endmacro %}

{#- What a period's usage is billed as: the total, or the average over every hour of the
    period to 6 decimals for averaged metrics. -#}
{% macro billed_usage(total, aggregation, period_seconds) -%}
    dictamesh_billing_billed_usage({{ total }}, {{ aggregation }}, {{ period_seconds }})
{%- endmacro %}

{#- Exact seconds between two instants (numeric, no float). -#}
{% macro seconds_between(start_ts, end_ts) -%}
    extract(epoch from ({{ end_ts }} - {{ start_ts }}))
{%- endmacro %}
