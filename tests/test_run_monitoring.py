"""The shipped Dagster instance (dagster_home/dagster.yaml) fails a run whose worker died."""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.test_utils import create_test_daemon_workspace_context
from dagster._core.workspace.load_target import EmptyWorkspaceTarget
from dagster._daemon.controller import create_daemons_from_instance
from dagster._daemon.monitoring import run_monitoring

from dagster_billing.settings import PROJECT_ROOT
from dagster_billing.warehouse.database import Warehouse

# A run worker: executes a job whose one step waits, as a dbt build or a backfill would.
RUN_WORKER = """
import time

import dagster as dg


@dg.op
def wait_for_the_database(context):
    context.log.info("step started")
    time.sleep(600)


@dg.job
def long_job():
    wait_for_the_database()


if __name__ == "__main__":
    with dg.DagsterInstance.get() as instance:
        dg.execute_job(dg.reconstructable(long_job), instance=instance)
"""


@pytest.fixture
def instance(
    blank_warehouse: Warehouse, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dg.DagsterInstance]:
    """The shipped dagster.yaml, its storage in an empty database of the test server."""
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(PROJECT_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.setenv("DAGSTER_PG_URL", blank_warehouse.libpq_url(driver="postgresql+psycopg2"))
    with dg.DagsterInstance.get() as created:
        yield created


def _wait_for_started_step(instance: dg.DagsterInstance, worker: subprocess.Popen) -> str:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert worker.poll() is None, "the run worker exited before its step started"
        for run in instance.get_runs():
            if run.status == dg.DagsterRunStatus.STARTED and any(
                e.dagster_event and e.dagster_event.event_type == dg.DagsterEventType.STEP_START
                for e in instance.all_logs(run.run_id)
            ):
                return run.run_id
        time.sleep(0.5)
    raise AssertionError("no run reached its step within 120 s")


def test_a_run_whose_worker_was_killed_is_marked_failed_by_run_monitoring(
    instance: dg.DagsterInstance, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """SIGKILL leaves the run STARTED (nothing is left to report it); the daemon's
    monitoring loop, as the shipped instance configures it, marks it failed once it is
    older than the configured maximum runtime, and not before."""
    assert instance.run_monitoring_enabled
    assert "MONITORING" in {d.daemon_type() for d in create_daemons_from_instance(instance)}
    max_runtime = instance.run_monitoring_max_runtime_seconds
    assert 0 < max_runtime <= 4 * 3600

    script = tmp_path / "run_worker.py"
    script.write_text(RUN_WORKER)
    worker = subprocess.Popen([sys.executable, str(script)], env=os.environ.copy())
    try:
        run_id = _wait_for_started_step(instance, worker)
    finally:
        worker.send_signal(signal.SIGKILL)
        worker.wait()

    def run_status() -> dg.DagsterRunStatus:
        run = instance.get_run_by_id(run_id)
        assert run is not None
        return run.status

    logger = logging.getLogger("run_monitoring_test")
    with create_test_daemon_workspace_context(EmptyWorkspaceTarget(), instance) as workspace:
        list(run_monitoring.execute_run_monitoring_iteration(workspace, logger))
        assert run_status() == dg.DagsterRunStatus.STARTED  # younger than the limit

        later = time.time() + max_runtime + 1
        monkeypatch.setattr(run_monitoring, "get_current_timestamp", lambda: later)
        list(run_monitoring.execute_run_monitoring_iteration(workspace, logger))
    assert run_status() == dg.DagsterRunStatus.FAILURE
