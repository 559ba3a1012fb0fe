{#- Rows must be unique on the combination of `columns` (dbt packages cannot be
    installed offline, so this small generic test replaces dbt_utils'). -#}
{% test unique_combination(model, columns) %}
select {{ columns | join(', ') }}, count(*) as occurrences
from {{ model }}
group by {{ columns | join(', ') }}
having count(*) > 1
{% endtest %}
