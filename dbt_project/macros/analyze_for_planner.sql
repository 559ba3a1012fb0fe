{#- Fresh statistics for the planner on an intermediate table (see dbt_project.yml).
    jsonb columns (tier_detail) get none: nothing filters or joins on them, and comparing
    jsonb values made the analyze of the line tables cost more than building them. -#}
{% macro analyze_for_planner(relation) %}
    {%- if execute -%}
        {%- set columns = adapter.get_columns_in_relation(relation)
            | rejectattr('dtype', 'equalto', 'jsonb') | map(attribute='quoted') | list -%}
        analyze {{ relation }} ({{ columns | join(', ') }})
    {%- endif -%}
{% endmacro %}
