"""dbt as a resource: dagster-dbt's, with dbt run inside the step's own process."""

from __future__ import annotations

import queue
import shutil
import threading
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dagster as dg
from dagster_dbt import DagsterDbtTranslator, DbtCliResource
from dagster_dbt.asset_utils import get_updated_cli_invocation_params_for_context
from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage
from dagster_dbt.errors import DagsterDbtCliRuntimeError
from dbt.cli.main import dbtRunner
from dbt_common.events.functions import msg_to_dict

from dagster_billing.dbt_project import environment, relocated_manifest

if TYPE_CHECKING:
    from dbt.cli.main import dbtRunnerResult
    from dbt_common.events.base_types import EventMsg

# the dbt events that carry a node's result, the ones dagster-dbt turns into Dagster events
RESULT_EVENTS = frozenset({"LogModelResult", "LogSeedResult", "LogSnapshotResult", "LogTestResult"})


class BillingDbtCliResource(DbtCliResource):
    """dagster-dbt's resource, whose `build` runs dbt in this process.

    `DbtCliResource.cli` starts a `dbt --version` process and then a dbt process per run:
    importing dbt-core again (~3 s; this process imported it to define the assets) and
    loading the saved parse (1.3 s), ~6 s before the first query. In process, dbt starts
    from the manifest `dbt parse` wrote, read once per process and pointed at the run's
    database (0.3 s). The results become the same Dagster events dagster-dbt yields (models
    as materializations, tests as asset checks), streamed as each node finishes.
    dbt keeps global state, so a process runs one invocation at a time: Dagster runs each
    step in its own process (or one after another in process), and the assets share a pool.
    """

    def build(
        self,
        args: Sequence[str],
        *,
        context: dg.AssetExecutionContext,
        env: Mapping[str, str],
    ) -> Iterator[Any]:
        """`dbt <args>` for the asset's selection, with `env` (the profile's values and
        session options, dagster_billing/resources/warehouse.py: dbt_env) in the
        environment while it runs; raises after the events if dbt failed."""
        params = get_updated_cli_invocation_params_for_context(context, {}, DagsterDbtTranslator())
        project = params.dbt_project
        project_dir = Path(project.project_dir if project else self.project_dir)
        target = project_dir / self._get_unique_target_path(context=context)
        dbt_args = [*args, "--project-dir", str(project_dir), *params.selection_args]
        dbt_args += ["--target-path", str(target), "--log-path", str(target)]
        if self.profiles_dir:
            dbt_args += ["--profiles-dir", str(self.profiles_dir)]
        if params.indirect_selection:
            dbt_args += ["--indirect-selection", params.indirect_selection]
        manifest = relocated_manifest(env["BILLING_DBT_DBNAME"], env["BILLING_DBT_SCHEMA"])
        results: queue.SimpleQueue[dict[str, Any] | None] = queue.SimpleQueue()
        errors: list[str] = []
        outcome: list[dbtRunnerResult] = []

        def on_event(event: EventMsg) -> None:
            """Called on dbt's threads: hands result events to the step's thread."""
            if event.info.level == "error":
                errors.append(event.info.msg)
            if event.info.name in RESULT_EVENTS:
                results.put(msg_to_dict(event))

        def run() -> None:
            """dbt's thread owns `env`: it holds until dbt ends, whatever the step does."""
            try:
                with environment(env):
                    outcome.append(dbtRunner(manifest, [on_event]).invoke(dbt_args))
            finally:
                results.put(None)

        # a thread, so each result reaches Dagster as it happens; a daemon, so the process
        # of an interrupted step exits without waiting for dbt (its transactions roll back)
        threading.Thread(target=run, name="dbt", daemon=True).start()
        while (raw := results.get()) is not None:
            yield from DbtCoreCliEventMessage(raw, {}).to_default_asset_events(
                manifest=params.manifest,
                dagster_dbt_translator=params.dagster_dbt_translator,
                context=context,
                target_path=target,
                project=project,
            )
        result = outcome[0]
        if result.success:
            # compiled SQL and dbt.log, ~2 MB a run: kept only to debug a failed run
            shutil.rmtree(target, ignore_errors=True)
            return
        if not isinstance(result.exception, Exception | None):
            raise result.exception  # an interrupt, as it was raised
        detail = "\n".join(errors) or str(result.exception)
        raise DagsterDbtCliRuntimeError(
            f"dbt {' '.join(args[:1])} failed (log: {target / 'dbt.log'}):\n{detail}"
        )
