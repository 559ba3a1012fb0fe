"""The container image's parts that can be checked without a Docker engine: the
Dockerfile passes hadolint, the entrypoint runs each role (outside Docker), and the
compose file wires every service to a role the entrypoint knows."""

from __future__ import annotations

import os
import re
import signal
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import yaml

from dagster_billing.settings import PROJECT_ROOT
from dagster_billing.warehouse.database import Warehouse
from tests.conftest import free_port

DOCKERFILE = PROJECT_ROOT / "Dockerfile"
ENTRYPOINT = PROJECT_ROOT / "deploy" / "docker-entrypoint.sh"
COMPOSE = PROJECT_ROOT / "docker-compose.yml"
VENV_BIN = Path(sys.executable).parent


def test_dockerfile_passes_hadolint() -> None:
    done = subprocess.run(
        [str(VENV_BIN / "hadolint"), str(DOCKERFILE)], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_dockerfile_is_multi_stage_non_root_with_the_manifest_parsed_at_build() -> None:
    text = DOCKERFILE.read_text()
    stages = re.findall(r"^FROM \S+ AS (\w+)$", text, re.MULTILINE)
    assert stages == ["build", "runtime"]
    assert "-slim-" in re.search(r"^ARG PYTHON_IMAGE=(\S+)$", text, re.MULTILINE).group(1)
    assert re.search(r"^RUN dbt parse ", text, re.MULTILINE)
    (user,) = re.findall(r"^USER (\S+)$", text, re.MULTILINE)
    assert user.split(":")[0] not in ("0", "root")
    assert 'ENTRYPOINT ["/app/deploy/docker-entrypoint.sh"]' in text
    assert ENTRYPOINT.stat().st_mode & stat.S_IXUSR


def _stubs(tmp_path: Path) -> dict[str, str]:
    """Stand-ins for the role's programs that print how they were called and their PID
    (equal to the entrypoint's own PID only if it exec'd them)."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("billing", "dagster-webserver", "dagster-daemon"):
        script = bin_dir / name
        script.write_text(
            '#!/bin/sh\necho "$$ $(basename "$0") $*"\n'
            '[ "$*" = "db upgrade" ] && [ -n "${FAIL_MIGRATION:-}" ] && exit 3\nexit 0\n'
        )
        script.chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "APP_HOME": "/srv/billing"}


def _run(env: dict[str, str], *args: str) -> tuple[int, list[str], int]:
    process = subprocess.Popen([str(ENTRYPOINT), *args], env=env, stdout=subprocess.PIPE, text=True)
    out, _ = process.communicate(timeout=30)
    return process.returncode, out.splitlines(), process.pid


def test_entrypoint_execs_each_role(tmp_path: Path) -> None:
    env = _stubs(tmp_path)
    cases = {
        (): "billing api --host 0.0.0.0 --port 8000",
        ("api",): "billing api --host 0.0.0.0 --port 8000",
        (
            "webserver",
        ): "dagster-webserver --host 0.0.0.0 --port 3000 -w /srv/billing/workspace.yaml",
        ("daemon",): "dagster-daemon run -w /srv/billing/workspace.yaml",
        ("relay",): "billing events relay --follow",
        ("metrics",): "billing metrics serve --host 0.0.0.0 --port 9109",
        ("billing", "invoice", "pdf", "INV-1"): "billing invoice pdf INV-1",
        ("daemon", "--heartbeat-tolerance", "60"): (
            "dagster-daemon run -w /srv/billing/workspace.yaml --heartbeat-tolerance 60"
        ),
    }
    for args, wanted in cases.items():
        code, lines, pid = _run(env, *args)
        assert code == 0
        assert lines == [f"{pid} {wanted}"], args
    code, lines, pid = _run(env | {"PORT": "9000"}, "api")
    assert lines == [f"{pid} billing api --host 0.0.0.0 --port 9000"]
    code, lines, _ = _run(env, "sh", "-c", "echo any command")
    assert lines == ["any command"]


def test_migrate_syncs_the_catalog_only_after_the_upgrade_succeeds(tmp_path: Path) -> None:
    env = _stubs(tmp_path)
    code, lines, _ = _run(env, "migrate")
    assert code == 0
    assert [line.split(" ", 1)[1] for line in lines] == [
        "billing db upgrade",
        "billing catalog sync",
    ]
    code, lines, _ = _run(env | {"FAIL_MIGRATION": "1"}, "migrate")
    assert code == 3
    assert [line.split(" ", 1)[1] for line in lines] == ["billing db upgrade"]


def test_entrypoint_metrics_role_serves_the_real_app(warehouse: Warehouse) -> None:
    """With the real `billing` on PATH: the role serves /metrics from the warehouse and
    stops cleanly on SIGTERM, as `docker stop` sends it."""
    port = free_port()
    env = {
        **os.environ,
        "PATH": f"{VENV_BIN}:{os.environ['PATH']}",
        "PORT": str(port),
        "BILLING_DATABASE_DSN": warehouse.libpq_url(),
    }
    process = subprocess.Popen(
        [str(ENTRYPOINT), "metrics"], env=env, stdout=subprocess.PIPE, text=True
    )
    try:
        assert process.stdout is not None
        assert process.stdout.readline().strip() == f"metrics on http://0.0.0.0:{port}/metrics"
        response = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=30, trust_env=False)
        assert response.status_code == 200
        assert 'dictamesh_billing_metrics_source_up{source="invoices"} 1.0' in response.text
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=30) == 0


def _roles() -> set[str]:
    return set(re.findall(r"^    ([a-z]+)\)$", ENTRYPOINT.read_text(), re.MULTILINE))


def test_compose_runs_every_part_with_a_known_role() -> None:
    services = yaml.safe_load(COMPOSE.read_text())["services"]
    assert {"postgres", "webserver", "daemon", "api", "relay", "prometheus", "kafka"} <= set(
        services
    )
    built = {name: s for name, s in services.items() if s.get("build") == "."}
    assert set(built) == {"migrate", "api", "webserver", "daemon", "relay"}
    assert {s["command"][0] for s in built.values()} <= _roles()
    for service in services.values():
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("./"):
                assert (PROJECT_ROOT / source).exists(), volume
