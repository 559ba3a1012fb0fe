{#- What `relation`'s issued line has recognized by the instant in column `edge`:
    straight-line by elapsed time over [service_start, service_end), the running total
    rounded half up to the currency's minor unit (so months, as differences of these,
    add up to the line exactly); 0 once the invoice was voided before the instant; a
    line with an empty period is recognized whole at its start (DECISIONLOG.md). -#}
{% macro recognized_through(relation, edge) %}
    case
        when {{ relation }}.voided_at < {{ relation }}.{{ edge }} then 0
        when {{ relation }}.period_seconds <= 0
            then case
                when {{ relation }}.{{ edge }} > {{ relation }}.service_start
                    then {{ relation }}.amount
                else 0
            end
        else round(
            {{ relation }}.amount
            * least(
                greatest(
                    extract(epoch from {{ relation }}.{{ edge }} - {{ relation }}.service_start),
                    0
                ),
                {{ relation }}.period_seconds
            )
            / {{ relation }}.period_seconds,
            {{ relation }}.minor_units
        )
    end
{% endmacro %}
