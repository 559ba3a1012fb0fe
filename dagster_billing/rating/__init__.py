"""The rating engine's Python side. The pricing rules live in dbt (dbt_project/models);
here: the scenario format and `billing simulate`, which run those same models."""
