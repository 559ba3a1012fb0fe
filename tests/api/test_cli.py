"""`billing api-key create | list | revoke` against a real warehouse."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.api.keys import authenticate
from dagster_billing.warehouse.database import Warehouse
from tests.api.conftest import Tenants
from tests.test_cli import billing


def test_a_key_is_shown_once_listed_by_prefix_and_revocable(
    warehouse: Warehouse, engine: Engine, tenants: Tenants
) -> None:
    dsn = warehouse.libpq_url()
    created = billing("api-key", "create", "--role", "org_member", "--org", "org-a", dsn=dsn)
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    prefix = token.split("_")[1]
    assert token.startswith("dmb_") and f"prefix {prefix}" in created.stderr
    with engine.begin() as conn:
        assert authenticate(conn, token).organization == "org-a"
    listed = billing("api-key", "list", dsn=dsn)
    assert prefix in listed.stdout and token not in listed.stdout
    assert billing("api-key", "revoke", prefix, dsn=dsn).returncode == 0
    with engine.begin() as conn:
        assert authenticate(conn, token) is None
        revoked = conn.scalar(
            sa.text("select revoked_at from dictamesh_billing_api_keys where prefix = :p"),
            {"p": prefix},
        )
    assert revoked is not None


def test_bad_input_is_one_line_naming_the_option(warehouse: Warehouse, tenants: Tenants) -> None:
    dsn = warehouse.libpq_url()
    no_org = billing("api-key", "create", "--role", "service", dsn=dsn)
    unknown = billing("api-key", "create", "--role", "org_member", "--org", "nope", dsn=dsn)
    bad_role = billing("api-key", "create", "--role", "root", dsn=dsn)
    assert (no_org.returncode, unknown.returncode, bad_role.returncode) == (2, 2, 2)
    assert no_org.stderr == "error: org: role 'service' needs an organization\n"
    assert unknown.stderr == "error: organization 'nope' not found\n"
    assert bad_role.stderr.startswith("error: role: must be one of admin, finance")


def test_billing_api_serves_the_api_with_a_key(warehouse: Warehouse, tenants: Tenants) -> None:
    """What `make demo`'s curl lines do: `billing api` answers an admin key's request."""
    import os
    import subprocess
    import time

    import httpx

    from tests.conftest import free_port
    from tests.test_cli import BILLING

    port = free_port()
    env = {**os.environ, "BILLING_DATABASE_DSN": warehouse.libpq_url()}
    process = subprocess.Popen(
        [BILLING, "api", "--port", str(port)],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}/api/v1/billing/organizations/org-a"
    headers = {"Authorization": f"Bearer {tenants.keys['admin']}"}
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                response = httpx.get(url, headers=headers, trust_env=False)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline
                time.sleep(0.2)
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert response.status_code == 200 and response.json()["id"] == "org-a"
