"""The dbt project as Dagster sees it: one `DbtProject`, its manifest parsed once."""

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from dagster_dbt import DbtProject

from dagster_billing.settings import PROJECT_ROOT

DBT_PROFILES_DIR = PROJECT_ROOT / "dbt_project"
DBT_SOURCE_DIRS = ("models", "macros", "tests", "seeds")
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))

# `target/` at the project root, where dagster-dbt looks for the partial parse it seeds
# each run's own `target/<run>/` with (see keep_partial_parse).
billing_dbt_project = DbtProject(
    project_dir=PROJECT_ROOT,
    profiles_dir=DBT_PROFILES_DIR,
    target_path=Path("target"),
)
PARTIAL_PARSE = "partial_parse.msgpack"


def manifest_is_stale(project: DbtProject = billing_dbt_project) -> bool:
    """A manifest older than any dbt file would name tests and models dbt no longer has,
    and dagster-dbt fails mid-run on the first unknown id."""
    manifest = project.manifest_path
    if not manifest.exists():
        return True
    sources = [PROJECT_ROOT / "dbt_project.yml", DBT_PROFILES_DIR / "profiles.yml"]
    for folder in DBT_SOURCE_DIRS:
        sources.extend(p for p in (DBT_PROFILES_DIR / folder).rglob("*") if p.is_file())
    newest = max(p.stat().st_mtime for p in sources)
    return newest > manifest.stat().st_mtime


def parse_manifest(project: DbtProject = billing_dbt_project) -> None:
    """`dbt parse` needs no database: the profile's env_var() lookups have defaults."""
    subprocess.run(
        [
            DBT_EXECUTABLE,
            "parse",
            "--quiet",
            "--profiles-dir",
            str(project.profiles_dir),
            "--target-path",
            str(project.target_path),
        ],
        cwd=project.project_dir,
        check=True,
    )


def keep_partial_parse(run_target: Path, project: DbtProject = billing_dbt_project) -> None:
    """Make a finished run's parse the one the next run starts from.

    dbt reuses a saved parse only when the profile's connection values and the `--vars`
    equal the run's; `dbt parse` above has neither (no database), so without this every
    run parses the whole project again (~3 s). Replaced atomically: runs may overlap.
    """
    source = run_target / PARTIAL_PARSE
    if source.exists():
        target = project.project_dir / project.target_path / PARTIAL_PARSE
        staged = target.with_name(f"{PARTIAL_PARSE}.{os.getpid()}")
        shutil.copyfile(source, staged)
        staged.replace(target)


@contextmanager
def environment(values: Mapping[str, str]) -> Iterator[None]:
    """`values` in the process environment for the block, as before after it: dbt, its
    subprocess and libpq read their settings from there."""
    saved = {key: os.environ.get(key) for key in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


if manifest_is_stale():
    parse_manifest()
