"""The real app served by uvicorn on a loopback port, over a module's own warehouse, with
two organizations (each with a subscription) and a key of every role."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx
import pytest
import uvicorn
from sqlalchemy.engine import Engine

from dagster_billing import customers
from dagster_billing.api import create_app
from dagster_billing.api.keys import create_key
from dagster_billing.settings import Settings, load_settings
from tests.conftest import free_port

START = datetime(2026, 10, 1, tzinfo=UTC)


@dataclass
class Served:
    url: str
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def serve(settings: Settings, engine: Engine) -> Served:
    """uvicorn in a thread on a free 127.0.0.1 port; ready when it accepts connections."""
    port = free_port()
    config = uvicorn.Config(
        create_app(settings, engine), host="127.0.0.1", port=port, log_level="warning"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    return Served(f"http://127.0.0.1:{port}", server, thread)


@dataclass
class Tenants:
    """Organizations `org-a` and `org-b`, subscriptions `sub-a` and `sub-b`, and keys."""

    keys: dict[str, str]


def make_tenants(engine: Engine) -> Tenants:
    with engine.begin() as conn:
        for name in ("a", "b"):
            customers.create_organization(
                conn, external_id=f"org-{name}", name=f"Org {name}", currency="USD", actor="test"
            )
            customers.create_subscription(
                conn,
                organization=f"org-{name}",
                plan="starter",
                seats=3,
                start=START,
                external_id=f"sub-{name}",
                actor="test",
            )
        keys = {
            "admin": create_key(conn, role="admin", actor="test")[0],
            "finance": create_key(conn, role="finance", actor="test")[0],
        }
        for name in ("a", "b"):
            for role in ("org_member", "service"):
                keys[f"{role}_{name}"] = create_key(
                    conn, role=role, organization=f"org-{name}", actor="test"
                )[0]
    return Tenants(keys)


@pytest.fixture(scope="module")
def tenants(engine: Engine) -> Tenants:
    return make_tenants(engine)


@pytest.fixture(scope="module")
def api(engine: Engine, tenants: Tenants) -> Iterator[str]:
    """The base URL of the served app (rate limit high enough not to interfere)."""
    served = serve(load_settings(api_rate_limit="10000/second"), engine)
    yield served.url
    served.stop()


def client(base: str, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(
        base_url=f"{base}/api/v1/billing", headers=headers, timeout=30, trust_env=False
    )


def finalize_invoices(engine: Engine, months: int = 3) -> None:
    """`months` monthly invoices per tenant, finalized the production way: drafts in the
    marts contract (dbt's tables, stood in for), then `finalize_window`."""
    from datetime import timedelta

    import sqlalchemy as sa

    from dagster_billing.invoicing.finalize import finalize_window
    from dagster_billing.invoicing.marts import CONTRACT_DDL
    from tests.rating.oracle import add_months

    with engine.begin() as conn:
        conn.execute(sa.text(CONTRACT_DDL))
        ids = dict(
            conn.execute(
                sa.text(
                    "select s.external_id, s.id from dictamesh_billing_subscriptions s"
                    " where s.external_id in ('sub-a', 'sub-b')"
                )
            ).all()
        )
        orgs = dict(
            conn.execute(
                sa.text(
                    "select external_id, id from dictamesh_billing_organizations"
                    " where external_id in ('org-a', 'org-b')"
                )
            ).all()
        )
        for month in range(months):
            billing_date = add_months(START, month)
            for name in ("a", "b"):
                key = f"sub-{name}/{billing_date.isoformat()}"
                conn.execute(
                    sa.text(
                        "insert into analytics.fct_invoices values (:key, :sid, :sext, :oid,"
                        " :oext, :bd, :bd, :pe, :seq, 'USD', 99, 0, 0.1, 9.9, 108.9, 0, 108.9, 0)"
                    ),
                    {
                        "key": key,
                        "sid": ids[f"sub-{name}"],
                        "sext": f"sub-{name}",
                        "oid": orgs[f"org-{name}"],
                        "oext": f"org-{name}",
                        "bd": billing_date,
                        "pe": add_months(START, month + 1),
                        "seq": month + 1,
                    },
                )
                conn.execute(
                    sa.text(
                        "insert into analytics.fct_invoice_line_items values (:key, 1,"
                        " 'subscription_fee', 'Starter (monthly)', null, 1, 99, 99, :bd, :pe,"
                        " '[]'::jsonb, null)"
                    ),
                    {"key": key, "bd": billing_date, "pe": add_months(START, month + 1)},
                )
            finalize_window(
                conn, billing_date, billing_date + timedelta(days=1), prefix="INV-", due_days=30
            )
