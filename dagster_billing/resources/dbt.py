"""dbt as a resource: dagster-dbt's, with dbt run inside the step's own process."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg
from dagster_dbt import DagsterDbtCliRuntimeError, DagsterDbtTranslator, DbtCliResource

# dagster-dbt 0.29 has no public API for a dbt run it did not start as a process: these
# two are what `DbtCliResource.cli` uses to select the step's nodes and to turn dbt's
# result events into Dagster events, kept to this module.
from dagster_dbt.asset_utils import get_updated_cli_invocation_params_for_context
from dagster_dbt.core.dbt_cli_event import DbtCoreCliEventMessage

from dagster_billing.dbt_project import DbtRunError, billing_dbt_project, run_dbt


class BillingDbtCliResource(DbtCliResource):
    """dagster-dbt's resource, whose `build` runs dbt in this process (`run_dbt`).

    `DbtCliResource.cli` starts a `dbt --version` process and then a dbt process per run,
    ~6 s before the first query (dbt_project.run_dbt says where it goes). The results
    become the same Dagster events dagster-dbt yields (models as materializations, tests
    as asset checks), streamed as each node finishes. The assets share a pool, so one dbt
    build runs at a time on the warehouse.
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
        # what dagster-dbt names a run's directory: <step>-<run>-<unique>
        step = context.op_execution_context.op_def.name
        unique = f"{step}-{context.run.run_id[:7]}-{uuid.uuid4().hex[:7]}"
        target = billing_dbt_project.project_dir / billing_dbt_project.target_path / unique
        dbt_args = [*args, *params.selection_args]
        if params.indirect_selection:
            dbt_args += ["--indirect-selection", params.indirect_selection]
        try:
            for raw in run_dbt(dbt_args, env=env, target=target):
                yield from DbtCoreCliEventMessage(raw, {}).to_default_asset_events(
                    manifest=params.manifest,
                    dagster_dbt_translator=params.dagster_dbt_translator,
                    context=context,
                    target_path=target,
                    project=project,
                )
        except DbtRunError as exc:
            raise DagsterDbtCliRuntimeError(str(exc)) from None
