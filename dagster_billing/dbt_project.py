"""The dbt project as Dagster sees it: one `DbtProject`, its manifest parsed once."""

from pathlib import Path

from dagster_dbt import DbtProject

from dagster_billing.settings import PROJECT_ROOT

DBT_PROFILES_DIR = PROJECT_ROOT / "dbt_project"

billing_dbt_project = DbtProject(
    project_dir=PROJECT_ROOT,
    profiles_dir=DBT_PROFILES_DIR,
    target_path=Path("dbt_project/target"),
)
