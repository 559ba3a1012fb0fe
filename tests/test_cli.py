"""The `billing` console script, run as a user runs it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from dagster_billing.warehouse import migrate
from dagster_billing.warehouse.database import Warehouse, make_engine

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
