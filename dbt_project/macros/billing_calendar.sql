{#- Calendar arithmetic in UTC. Postgres clamps a month step to the month's last day,
    and stepping from the anchor (never from the previous date) returns to the anchor
    day afterwards: Jan 31 -> Feb 28/29 -> Mar 31 -> Apr 30 (docs/rate-card.md). -#}
{% macro add_months_utc(ts, months) -%}
    (({{ ts }} at time zone 'UTC') + make_interval(months => ({{ months }})::integer)) at time zone 'UTC'
{%- endmacro %}

{#- Whole months from `start_ts` to `end_ts` (UTC), for sizing a period spine. -#}
{% macro months_between_utc(start_ts, end_ts) -%}
    (
        extract(year from age({{ end_ts }} at time zone 'UTC', {{ start_ts }} at time zone 'UTC')) * 12
        + extract(month from age({{ end_ts }} at time zone 'UTC', {{ start_ts }} at time zone 'UTC'))
    )::integer
{%- endmacro %}

{#- Exact seconds between two instants (numeric, no float). -#}
{% macro seconds_between(start_ts, end_ts) -%}
    extract(epoch from ({{ end_ts }} - {{ start_ts }}))
{%- endmacro %}
