{#- For sqlfluff only (not a dbt macro path): dbt's env_var() with its default. -#}
{% macro env_var(name, default='') -%}{{ default }}{%- endmacro %}
