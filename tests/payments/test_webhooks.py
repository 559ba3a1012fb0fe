"""POST /webhooks/stripe: signatures, the inbox, duplicates, out-of-order events, and a
real delivery signed by localstripe."""

from __future__ import annotations

import hashlib
import hmac
import json
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import httpx
import pytest
import sqlalchemy as sa
import uvicorn
from fastapi.testclient import TestClient
from sqlalchemy.engine import Engine

from dagster_billing.api import create_app
from dagster_billing.payments.charging import start_attempt
from dagster_billing.payments.webhooks import process_inbox
from dagster_billing.settings import load_settings
from tests.conftest import STRIPE_TEST_API_KEY, free_port
from tests.payments.conftest import invoice_status, payment_rows

SECRETS = "whsec_old_secret,whsec_new_secret"


def sign(payload: bytes, secret: str, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.".encode() + payload, hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def event(event_id: str, kind: str = "payment_intent.succeeded", intent_id: str = "pi_x") -> bytes:
    body = {"id": event_id, "type": kind, "data": {"object": {"id": intent_id, "status": "lies"}}}
    return json.dumps(body).encode()


@pytest.fixture(scope="module")
def client(engine: Engine) -> Iterator[TestClient]:
    settings = load_settings(stripe_webhook_secret=SECRETS)
    with TestClient(create_app(settings, engine)) as test_client:
        yield test_client


def _post(client: TestClient, payload: bytes, signature: str | None) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return client.post("/webhooks/stripe", content=payload, headers=headers)


def _inbox(engine: Engine, event_id: str) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.scalars(
                sa.text(
                    "select status from dictamesh_billing_stripe_webhook_events"
                    " where stripe_event_id = :e"
                ),
                {"e": event_id},
            )
        )


def test_a_valid_signature_is_stored_once(client: TestClient, engine: Engine) -> None:
    payload = event("evt_valid_1")
    response = _post(client, payload, sign(payload, "whsec_new_secret"))
    assert response.status_code == 200 and response.json() == {"received": True, "duplicate": False}
    assert _inbox(engine, "evt_valid_1") == ["received"]


@pytest.mark.parametrize(
    ("case", "expected"),
    [
        ("tampered", 400),
        ("wrong_secret", 400),
        ("two_v1_one_valid", 200),
        ("old_secret_during_rotation", 200),
        ("t_minus_301", 400),
        ("t_plus_301", 400),
        ("t_minus_299", 200),
        ("missing_header", 400),
    ],
)
def test_signature_cases(client: TestClient, engine: Engine, case: str, expected: int) -> None:
    event_id = f"evt_sig_{case}"
    payload = event(event_id)
    now = int(time.time())
    signature = {
        "tampered": sign(payload, "whsec_new_secret"),
        "wrong_secret": sign(payload, "whsec_someone_else"),
        "two_v1_one_valid": sign(payload, "whsec_someone_else")
        + ",v1="
        + sign(payload, "whsec_new_secret", now).split("v1=")[1],
        "old_secret_during_rotation": sign(payload, "whsec_old_secret"),
        "t_minus_301": sign(payload, "whsec_new_secret", now - 301),
        "t_plus_301": sign(payload, "whsec_new_secret", now + 301),
        "t_minus_299": sign(payload, "whsec_new_secret", now - 299),
        "missing_header": None,
    }[case]
    if case == "tampered":
        payload = payload.replace(b"succeeded", b"failed")
    response = _post(client, payload, signature)
    assert response.status_code == expected
    assert _inbox(engine, event_id) == (["received"] if expected == 200 else [])


def test_the_same_event_three_times_is_stored_once(client: TestClient, engine: Engine) -> None:
    payload = event("evt_thrice")
    answers = [_post(client, payload, sign(payload, "whsec_new_secret")).json() for _ in range(3)]
    assert [a["duplicate"] for a in answers] == [False, True, True]
    assert _inbox(engine, "evt_thrice") == ["received"]


def test_out_of_order_events_end_in_stripes_state(
    client: TestClient, engine: Engine, gateway, open_invoice
) -> None:
    """The attempt's PaymentIntent succeeded but we never recorded it; then 'failed' and
    'processing' events arrive after 'succeeded', each claiming another state."""
    invoice = open_invoice(gateway=gateway)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        payment_id, request = start_attempt(conn, invoice.id, now=now)  # type: ignore[misc]
    intent = gateway.create_payment_intent(**request)
    for n, kind in enumerate(
        ["payment_intent.succeeded", "payment_intent.payment_failed", "payment_intent.processing"]
    ):
        payload = event(f"evt_order_{invoice.id}_{n}", kind, intent.id)
        assert _post(client, payload, sign(payload, "whsec_new_secret")).status_code == 200

    result = process_inbox(engine, gateway, now=now, retry_days=(1,))

    assert result.processed >= 3
    (row,) = payment_rows(engine, invoice.id)
    assert (row["id"], row["status"], row["stripe_payment_intent_id"]) == (
        payment_id,
        "succeeded",
        intent.id,
    )
    assert invoice_status(engine, invoice.id) == "paid"
    assert _inbox(engine, f"evt_order_{invoice.id}_2") == ["processed"]
    # Processing the inbox again changes nothing.
    assert process_inbox(engine, gateway, now=now, retry_days=(1,)).processed == 0


def test_unknown_event_types_are_ignored(client: TestClient, engine: Engine, gateway) -> None:
    payload = event("evt_customer_created", "customer.created", "cus_x")
    _post(client, payload, sign(payload, "whsec_new_secret"))
    process_inbox(engine, gateway, now=datetime.now(UTC), retry_days=(1,))
    assert _inbox(engine, "evt_customer_created") == ["ignored"]


@pytest.fixture(scope="module")
def live_app(engine: Engine) -> Iterator[str]:
    """The app served by uvicorn on loopback, for localstripe's own webhook delivery."""
    settings = load_settings(stripe_webhook_secret=SECRETS)
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, engine), host="127.0.0.1", port=port, log_level="warning"
        )
    )
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(timeout=10)


def test_a_webhook_signed_by_localstripe_is_verified_and_processed(
    live_app: str, stripe_server: str, engine: Engine, gateway, open_invoice
) -> None:
    httpx.post(
        f"{stripe_server}/_config/webhooks/billing-tests",
        data={
            "url": f"{live_app}/webhooks/stripe",
            "secret": "whsec_new_secret",
            "events[0]": "payment_intent.succeeded",
        },
        auth=(STRIPE_TEST_API_KEY, ""),
        trust_env=False,
    ).raise_for_status()
    invoice = open_invoice(gateway=gateway)
    now = datetime.now(UTC)
    with engine.begin() as conn:
        payment_id, request = start_attempt(conn, invoice.id, now=now)  # type: ignore[misc]
    intent = gateway.create_payment_intent(**request)  # recorded only through the webhook

    deadline = time.monotonic() + 15
    with engine.connect() as conn:
        while True:
            stored = conn.execute(
                sa.text(
                    "select stripe_event_id from dictamesh_billing_stripe_webhook_events"
                    " where payload->'data'->'object'->>'id' = :pi"
                ),
                {"pi": intent.id},
            ).all()
            if stored or time.monotonic() > deadline:
                break
            time.sleep(0.2)
    assert len(stored) == 1

    process_inbox(engine, gateway, now=now, retry_days=(1,))

    (row,) = payment_rows(engine, invoice.id)
    assert (row["id"], row["status"]) == (payment_id, "succeeded")
    assert invoice_status(engine, invoice.id) == "paid"
