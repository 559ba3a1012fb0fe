{#- `columns` identify a row: no two rows share them and none of them is null. One
    query for what a unique test and a not_null test per key column check, one dbt node
    instead of several in every billing run. -#}
{% test primary_key(model, columns) %}
select {{ columns | join(', ') }}, count(*) as occurrences
from {{ model }}
group by {{ columns | join(', ') }}
having
    count(*) > 1
    {%- for column in columns %}
    or {{ column }} is null
    {%- endfor %}
{% endtest %}
