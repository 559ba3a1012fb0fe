"""The `billing` console script, run as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from dagster_billing.warehouse import migrate
from dagster_billing.warehouse.database import Warehouse, make_engine
from tests.conftest import free_port
from tests.usage.helpers import create_organizations

BILLING = str(Path(sys.executable).with_name("billing"))


def billing(*args: str, dsn: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
    environ = {**os.environ, **env}
    if dsn is not None:
        environ["BILLING_DATABASE_DSN"] = dsn
    return subprocess.run(
        [BILLING, *args], capture_output=True, text=True, env=environ, timeout=600
    )


def test_help_lists_the_subcommands() -> None:
    result = billing("--help")
    assert result.returncode == 0
    for command in ("db", "catalog", "audit", "demo", "dev"):
        assert command in result.stdout


def test_db_upgrade_current_downgrade(blank_warehouse: Warehouse) -> None:
    dsn = blank_warehouse.libpq_url()
    assert billing("db", "current", dsn=dsn).stdout.strip() == "base"
    upgraded = billing("db", "upgrade", dsn=dsn)
    assert upgraded.returncode == 0, upgraded.stderr
    assert billing("db", "current", dsn=dsn).stdout.strip() == migrate.head_revision()
    synced = billing("catalog", "sync", dsn=dsn)
    assert synced.returncode == 0, synced.stderr
    assert "rows changed" in synced.stdout
    assert billing("catalog", "sync", dsn=dsn).stdout.startswith(
        "catalog 2026.11.1: 0 rows changed"
    )
    downgraded = billing("db", "downgrade", "base", dsn=dsn)
    assert downgraded.returncode == 0, downgraded.stderr
    assert billing("db", "current", dsn=dsn).stdout.strip() == "base"


def test_audit_verify_exits_one_on_a_broken_chain(warehouse: Warehouse) -> None:
    dsn = warehouse.libpq_url()
    engine = make_engine(warehouse)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_audit_log (actor, action, entity_type, entity_id)"
                " values ('cli-test', 'credit.granted', 'credit', '1')"
            )
        )
    intact = billing("audit", "verify", dsn=dsn)
    assert intact.returncode == 0 and "intact" in intact.stdout
    with engine.begin() as conn:
        conn.execute(sa.text("alter table dictamesh_billing_audit_log disable trigger user"))
        conn.execute(sa.text("update dictamesh_billing_audit_log set entity_id = '2'"))
        conn.execute(sa.text("alter table dictamesh_billing_audit_log enable trigger user"))
    broken = billing("audit", "verify", dsn=dsn)
    assert broken.returncode == 1
    assert "audit log broken at id" in broken.stderr


@pytest.mark.parametrize(
    ("env", "line"),
    [
        ({"INVOICE_TAX_RATE": "1.5"}, "error: INVOICE_TAX_RATE: must be >= 0 and < 1, got 1.5"),
        ({"USAGE_AGGREGATION_INTERVAL": "7m"}, "error: USAGE_AGGREGATION_INTERVAL: only '1h'"),
    ],
)
def test_bad_configuration_exits_two_with_one_line(env: dict[str, str], line: str) -> None:
    result = billing("db", "current", **env)
    assert result.returncode == 2
    assert result.stderr.startswith(line)
    assert len(result.stderr.strip().splitlines()) == 1


# (arguments, environment, what the one line must say); "{dsn}" is the test warehouse.
BAD_INPUT = [
    (["db", "current"], {"BILLING_DATABASE_DSN": "garbage"}, "BILLING_DATABASE_DSN: not a URL"),
    (
        ["db", "current"],
        {"BILLING_DATABASE_DSN": "postgresql://u:pw_topsecret@h:notaport/db"},
        "BILLING_DATABASE_DSN: the port is not a number",
    ),
    (
        ["catalog", "sync"],
        {"BILLING_DATABASE_DSN": "postgresql://u:pw_topsecret@127.0.0.1:{closed}/db"},
        "BILLING_DATABASE_DSN: cannot connect",
    ),
    (["db", "upgrade", "no-such-revision"], {}, "no-such-revision"),
    (["nosuch"], {}, "No such command 'nosuch'"),
    (["usage", "import"], {}, "Missing argument 'file'"),
    (["usage", "import", "/no/such/usage.csv"], {}, "'/no/such/usage.csv' does not exist"),
    (["usage", "import", "{tmp}/usage.txt"], {}, "usage.txt: unknown format"),
    (["usage", "current", "nobody"], {}, "organization: unknown organization 'nobody'"),
    (["usage", "current", "nobody", "--since", "soon"], {}, "--since: not an ISO timestamp"),
    (
        ["usage", "current", "cli-org"],
        {"PROMETHEUS_URL": "http://u:pw_topsecret@127.0.0.1:{closed}"},
        "Prometheus at http://u:***@127.0.0.1:",
    ),
    (["invoice", "pdf", "INV-1", "-o", "/no/such/dir/x.pdf"], {}, "--output: directory"),
    (["invoice", "pdf", "INV-NOPE", "-o", "{tmp}/x.pdf"], {}, "INV-NOPE"),
    (["invoice", "void", "INV-NOPE", "--reason", "test"], {}, "INV-NOPE"),
    (["invoice", "preview", "nobody"], {}, 'fct_invoice_line_items" does not exist'),
    (["simulate", "/no/such/scenario.yaml"], {}, "does not exist"),
    (["simulate", "{tmp}/scenario.yaml"], {}, "organizations"),
    (["db", "current"], {"PROMETHEUS_URL": "ftp://u:pw_topsecret@x"}, "PROMETHEUS_URL: "),
]


@pytest.mark.parametrize(("args", "env", "expected"), BAD_INPUT, ids=lambda v: str(v)[:40])
def test_every_command_ends_bad_input_in_one_line_naming_the_problem(
    warehouse: Warehouse, tmp_path: Path, args: list[str], env: dict[str, str], expected: str
) -> None:
    (tmp_path / "usage.txt").write_text("organization,metric\n")
    (tmp_path / "scenario.yaml").write_text("as_of: '2026-05-01T00:00:00Z'\norganizations: 7\n")
    engine = make_engine(warehouse)
    create_organizations(engine, "cli-org")
    engine.dispose()
    closed = str(free_port())
    fill = {"{tmp}": str(tmp_path), "{closed}": closed}

    def filled(text: str) -> str:
        for key, value in fill.items():
            text = text.replace(key, value)
        return text

    environ = {name: filled(value) for name, value in env.items()}
    dsn = environ.pop("BILLING_DATABASE_DSN", warehouse.libpq_url())
    result = billing(*[filled(arg) for arg in args], dsn=dsn, **environ)
    assert result.returncode in (1, 2), result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("error: ") and expected in lines[0], lines[0]
    assert "pw_topsecret" not in result.stderr + result.stdout


def test_dev_stops_on_sigterm_with_every_child(warehouse: Warehouse, tmp_path: Path) -> None:
    """Started the way a script's background job is (SIGINT ignored, which `dagster dev`
    turns into ignoring SIGTERM too), `billing dev` still stops on SIGTERM, children and all."""
    import signal
    import socket
    import time

    import psutil

    port = free_port()
    env = {**os.environ, "BILLING_DATABASE_DSN": warehouse.libpq_url()}
    process = subprocess.Popen(
        [BILLING, "dev", "-p", str(port)],
        env=env,
        stdout=(tmp_path / "dev.log").open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN),
    )
    try:
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline and process.poll() is None:
            with socket.socket() as client:
                if client.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(1)
        assert process.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
        children = psutil.Process(process.pid).children(recursive=True)
        assert children, "dagster dev started no processes"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=120) is not None
        _, alive = psutil.wait_procs(children, timeout=30)
        assert alive == [], [p.cmdline() for p in alive]
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def test_simulate_works_on_a_fresh_clone_without_setup(tmp_path: Path) -> None:
    """No DSN and an empty data directory: the embedded warehouse prepares itself."""
    scenario = Path(__file__).resolve().parent / "scenarios" / "jpy_has_no_decimals.yaml"
    environ = {k: v for k, v in os.environ.items() if k != "BILLING_DATABASE_DSN"}
    result = subprocess.run(
        [BILLING, "simulate", str(scenario), "--json"],
        capture_output=True,
        text=True,
        env={**environ, "BILLING_DATA_DIR": str(tmp_path / "fresh")},
        timeout=600,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "24422" in result.stdout.replace(",", "").replace(".00", "")


def test_usage_current_shows_the_period_so_far(warehouse: Warehouse) -> None:
    from datetime import UTC, datetime, timedelta

    from tests.usage.helpers import insert_usage

    engine = make_engine(warehouse)
    org = create_organizations(engine, "current-org")["current-org"]
    hour = datetime.now(UTC).replace(minute=0, second=0, microsecond=0) - timedelta(hours=1)
    insert_usage(engine, org, "api_calls", hour, 42)
    engine.dispose()
    since = (hour - timedelta(hours=1)).isoformat()
    result = billing("usage", "current", "current-org", "--since", since, dsn=warehouse.libpq_url())
    assert result.returncode == 0, result.stderr
    assert "api_calls         42" in result.stdout
    assert "live hours from Prometheus: none" in result.stdout
