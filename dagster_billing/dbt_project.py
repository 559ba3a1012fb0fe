"""The dbt project as Dagster sees it: one `DbtProject`, its manifest parsed once."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from dagster_dbt import DbtProject

from dagster_billing.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from dbt.contracts.graph.manifest import Manifest

DBT_PROFILES_DIR = PROJECT_ROOT / "dbt_project"
DBT_SOURCE_DIRS = ("models", "macros", "tests", "seeds")
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))

# `target/` at the project root: `dbt parse` writes the manifest there, and each run gets
# its own `target/<run>/` for compiled SQL and dbt.log.
billing_dbt_project = DbtProject(
    project_dir=PROJECT_ROOT,
    profiles_dir=DBT_PROFILES_DIR,
    target_path=Path("target"),
)


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


@lru_cache(maxsize=1)
def parsed_manifest() -> Manifest:
    """The project's manifest as dbt's own object, read once per process (0.2 s; dbt
    starting from its saved parse takes 1.3 s)."""
    from dbt.contracts.graph.manifest import Manifest, WritableManifest
    from dbt.contracts.graph.nodes import GenericTestNode

    if manifest_is_stale():
        parse_manifest()
    path = billing_dbt_project.manifest_path
    manifest = Manifest.from_writable_manifest(WritableManifest.read_and_check_versions(str(path)))
    # dbt reads generic tests back as singular ones, without the kwargs they compile with
    for unique_id, node in json.loads(path.read_bytes())["nodes"].items():
        if node.get("test_metadata"):
            manifest.nodes[unique_id] = GenericTestNode.from_dict(node)
    return manifest


def relocated_manifest(database: str, schema: str, source_schema: str | None = None) -> Manifest:
    """The parsed manifest pointed at `database`: models in `schema` plus their layer
    suffix, sources in `source_schema` when given. What a profile's dbname and schema and
    `--vars billing_source_schema` would do, without the whole re-parse that changing
    either costs (`dbt parse` ran with the profile's defaults and no database)."""
    manifest = copy.deepcopy(parsed_manifest())
    target = manifest.nodes["model.dictamesh_billing.fct_invoices"].schema
    for source in manifest.sources.values():
        source.database = database
        source.schema = source_schema or source.schema
        source.relation_name = f'"{database}"."{source.schema}"."{source.identifier}"'
    for node in manifest.nodes.values():
        if node.resource_type.value in ("model", "seed", "snapshot"):
            node.database = database
            node.schema = schema + node.schema.removeprefix(target)
            node.relation_name = f'"{database}"."{node.schema}"."{node.alias}"'
        elif node.resource_type.value in ("test", "unit_test"):
            node.database = database
    return manifest


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
