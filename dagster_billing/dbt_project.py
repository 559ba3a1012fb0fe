"""The dbt project as Dagster sees it: one `DbtProject`, its manifest parsed once, and the
one way this package runs dbt (`run_dbt`: in this process, on that manifest), which the
Dagster step (resources/dbt.py) and `billing simulate` (rating/simulate.py) share."""

from __future__ import annotations

import copy
import json
import os
import queue
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dagster_dbt import DbtProject

from dagster_billing.settings import PROJECT_ROOT

if TYPE_CHECKING:
    from dbt.cli.main import dbtRunnerResult
    from dbt.contracts.graph.manifest import Manifest
    from dbt_common.events.base_types import EventMsg

DBT_PROFILES_DIR = PROJECT_ROOT / "dbt_project"
DBT_SOURCE_DIRS = ("models", "macros", "tests", "seeds")
DBT_EXECUTABLE = str(Path(sys.executable).with_name("dbt"))
# the dbt events that carry a node's result, the ones dagster-dbt turns into Dagster events
RESULT_EVENTS = frozenset({"LogModelResult", "LogSeedResult", "LogSnapshotResult", "LogTestResult"})

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


class DbtRunError(RuntimeError):
    """dbt reported failure; the message holds its error lines and the kept dbt.log."""

    def __init__(self, message: str, log: Path) -> None:
        super().__init__(message)
        self.log = log


def run_dbt(
    args: Sequence[str],
    *,
    env: Mapping[str, str],
    target: Path,
    source_schema: str | None = None,
) -> Iterator[dict[str, Any]]:
    """`dbt <args>` in this process, on the parsed manifest pointed at the profile's
    database and schema from `env` (sources at `source_schema` when given), `env` in the
    process environment while dbt runs. Yields each node's result event (dbt's structured
    log, as dagster-dbt reads it) as the node finishes; after the last, raises DbtRunError
    if dbt failed (an interrupt as it was raised). `target` receives the compiled SQL and
    dbt.log: deleted after a success (~2 MB a run), kept after a failure to debug it.

    In process rather than `dbt` processes: a new process imports dbt-core again (~3 s)
    and loads the saved parse (1.3 s); this starts from the manifest read once per process
    (0.3 s to relocate). dbt keeps global state, so a process runs one invocation at a
    time (Dagster runs each step in its own process; `billing simulate` runs one)."""
    from dbt.cli.main import dbtRunner
    from dbt_common.events.functions import msg_to_dict

    database, schema = env["BILLING_DBT_DBNAME"], env["BILLING_DBT_SCHEMA"]
    manifest = relocated_manifest(database, schema, source_schema)
    dbt_args = [
        *args,
        "--project-dir",
        str(billing_dbt_project.project_dir),
        "--profiles-dir",
        str(billing_dbt_project.profiles_dir),
        "--target-path",
        str(target),
        "--log-path",
        str(target),
    ]
    results: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
    errors: list[str] = []
    outcome: list[dbtRunnerResult] = []

    def on_event(event: EventMsg) -> None:
        """Called on dbt's threads: hands result events to the caller's thread."""
        if event.info.level == "error":
            errors.append(event.info.msg)
        if event.info.name in RESULT_EVENTS:
            results.put(msg_to_dict(event))

    def run() -> None:
        """dbt's thread owns `env`: it holds until dbt ends, whatever the caller does."""
        try:
            with environment(env):
                outcome.append(dbtRunner(manifest, [on_event]).invoke(dbt_args))
        finally:
            results.put(None)

    # a thread, so each result reaches the caller as it happens; a daemon, so the process
    # of an interrupted step exits without waiting for dbt (its transactions roll back)
    threading.Thread(target=run, name="dbt", daemon=True).start()
    while (raw := results.get()) is not None:
        yield raw
    result = outcome[0]
    if result.success:
        shutil.rmtree(target, ignore_errors=True)
        return
    if not isinstance(result.exception, Exception | None):
        raise result.exception  # an interrupt, as it was raised
    log = target / "dbt.log"
    detail = "\n".join(errors) or str(result.exception)
    raise DbtRunError(f"dbt {' '.join(args[:1])} failed (log: {log}):\n{detail}", log)


if manifest_is_stale():
    parse_manifest()
