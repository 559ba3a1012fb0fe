"""`make demo` pays its open invoices against localstripe, when it is installed.

localstripe (a dev extra) is started for the demo on a loopback port, in memory (its
own CLI binds every interface and pickles its store to a machine-wide file), and
stopped afterwards. Every organization gets Stripe's test card `pm_card_visa`, except
`globex`, whose card attaches and then declines every charge, so the summary shows a
paid and a failed invoice and the dunning retry scheduled for it.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import httpx
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.payments.charging import charge_due_invoices
from dagster_billing.payments.customers import add_payment_method, default_payment_method

DEMO_API_KEY = "sk_test_demo"
DECLINING_ORGANIZATION = "globex"

# In-process localstripe on 127.0.0.1 only, never writing its pickle.
_SERVER = """
import sys
from aiohttp import web
from localstripe import resources, server
resources.Store.dump_to_disk = lambda self: None
web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


def localstripe_available() -> bool:
    return bool(
        shutil.which("localstripe") or Path(sys.executable).with_name("localstripe").exists()
    )


@contextmanager
def localstripe() -> Iterator[str]:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-c", _SERVER, str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/v1/customers", auth=(DEMO_API_KEY, ""), trust_env=False)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise RuntimeError("localstripe did not start for the demo") from None
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=10)


def pay_demo_invoices(engine: Engine, echo: Callable[[str], None]) -> None:
    if not localstripe_available():
        echo("skipped (no Stripe-compatible server on PATH; localstripe is a dev extra)")
        return
    from dagster_billing.resources.stripe import StripeApi

    with localstripe() as url:
        gateway = StripeApi(DEMO_API_KEY, api_base=url)
        with engine.connect() as conn:
            organizations = conn.execute(
                sa.text(
                    "select distinct o.id, o.external_id from dictamesh_billing_organizations o"
                    " join dictamesh_billing_invoices i on i.organization_id = o.id"
                    " where i.status = 'open' and i.amount_due > 0 order by o.id"
                )
            ).all()
        for org_id, external_id in organizations:
            with engine.connect() as conn:
                has_method = default_payment_method(conn, org_id) is not None
            if not has_method:
                card = (
                    "pm_card_chargeCustomerFail"
                    if external_id == DECLINING_ORGANIZATION
                    else "pm_card_visa"
                )
                add_payment_method(engine, gateway, org_id, payment_method_id=card)
        summary = charge_due_invoices(engine, gateway, now=datetime.now(UTC))
    echo(
        f"through localstripe: {summary.count('succeeded')} paid, {summary.count('failed')}"
        f" failed, {summary.count('skipped')} skipped"
    )
    failed = [o for o in summary.outcomes if o.status == "failed"]
    with engine.connect() as conn:
        for outcome in failed:
            number = conn.scalar(
                sa.text("select number from dictamesh_billing_invoices where id = :i"),
                {"i": outcome.invoice_id},
            )
            echo(f"{number}: {outcome.failure_code}, retried by dunning (PAYMENT_RETRY_SCHEDULE)")
