"""Customer webhooks against a loopback receiver: the documented verification accepts
our signature and rejects a tampered body; 503 is retried; a dead endpoint is disabled."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.events.webhooks import WebhookDispatcher, WebhookError, register_endpoint
from tests.events.helpers import write_seat_changes
from tests.invoicing.conftest import Billing
from tests.notifications.conftest import ScriptedServer

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"
SECRET = "whsec_test_0123456789abcdef"
NOW = datetime(2026, 11, 2, 9, tzinfo=UTC)


def documented_verify() -> Any:
    """The receiver example from docs/events.md, run as written."""
    block = re.search(r"```python\n(import hashlib, hmac, time\n.*?)```", DOCS.read_text(), re.S)
    assert block is not None, "docs/events.md lost its verification example"
    assert len(block.group(1).strip().splitlines()) <= 10
    namespace: dict[str, Any] = {}
    exec(block.group(1), namespace)
    return namespace["verify"]


def _settled(engine: Engine) -> WebhookDispatcher:
    dispatcher = WebhookDispatcher(engine, backoff=timedelta(seconds=30))
    dispatcher.fan_out(NOW)
    return dispatcher


def _attempts(engine: Engine, endpoint_id: int) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "select a.attempt, a.status_code, d.status"
                " from dictamesh_billing_webhook_attempts a"
                " join dictamesh_billing_webhook_deliveries d on d.id = a.delivery_id"
                " where d.endpoint_id = :e order by a.attempted_at, a.attempt"
            ),
            {"e": endpoint_id},
        ).all()


def test_signed_delivery_verifies_with_the_documented_example_and_503_is_retried(
    billing: Billing, engine: Engine, http_server: ScriptedServer
) -> None:
    org = billing.customer().organization_external_id  # its subscription.created is settled
    dispatcher = _settled(engine)
    with engine.begin() as conn:
        endpoint, _ = register_endpoint(conn, org, f"{http_server.url}/hooks", secret=SECRET)
    write_seat_changes(engine, org, 1, "hook1")
    http_server.answer(503, 200)

    first = dispatcher.run(NOW)
    assert (first.queued, first.delivered, first.retrying) == (1, 0, 1)
    assert dispatcher.deliver_due(NOW + timedelta(seconds=29)).delivered == 0  # not yet due
    assert dispatcher.deliver_due(NOW + timedelta(seconds=30)).delivered == 1
    assert [(a.attempt, a.status_code) for a in _attempts(engine, endpoint)] == [
        (1, 503),
        (2, 200),
    ]
    assert dispatcher.deliver_due(NOW + timedelta(days=1)).delivered == 0  # delivered once

    verify = documented_verify()
    first_request, second_request = http_server.requests
    for request in (first_request, second_request):
        signature = request.headers["DictaMesh-Signature"]
        assert verify(SECRET, signature, request.body)
        assert not verify(SECRET, signature, request.body.replace(b'"to":1', b'"to":9'))
        assert not verify("whsec_other_secret_000000", signature, request.body)
    assert [r.headers["DictaMesh-Delivery-Attempt"] for r in http_server.requests] == ["1", "2"]
    document = json.loads(second_request.body)
    assert document["specversion"] == "1.0"
    assert document["type"] == "billing.subscription.updated"
    assert document["id"] == second_request.headers["DictaMesh-Event-Id"]
    assert document["data"]["changes"] == {"seats": {"from": 0, "to": 1}}

    stale = re.sub(r"t=\d+", "t=1000", first_request.headers["DictaMesh-Signature"])
    assert not verify(SECRET, stale, first_request.body)


def test_an_endpoint_failing_for_days_is_disabled_and_its_queue_fails(
    billing: Billing, engine: Engine, http_server: ScriptedServer
) -> None:
    org = billing.customer().organization_external_id  # its subscription.created is settled
    dispatcher = _settled(engine)
    with engine.begin() as conn:
        endpoint, _ = register_endpoint(conn, org, f"{http_server.url}/dead", secret=SECRET)
    write_seat_changes(engine, org, 1, "hook1")
    write_seat_changes(engine, org, 1, "hook2")
    http_server.answer(500)
    assert dispatcher.run(NOW).retrying == 2
    later = dispatcher.deliver_due(NOW + timedelta(days=3, seconds=1))
    assert (later.disabled_endpoints, later.failed) == (1, 2)
    with engine.connect() as conn:
        status = conn.scalar(
            sa.text("select status from dictamesh_billing_webhook_endpoints where id = :e"),
            {"e": endpoint},
        )
    assert status == "disabled"
    assert {a.status for a in _attempts(engine, endpoint)} == {"failed"}
    write_seat_changes(engine, org, 1, "hook3")
    assert dispatcher.run(NOW + timedelta(days=4)).queued == 0  # disabled: nothing queued


def test_registration_needs_https_and_a_known_organization(
    billing: Billing, engine: Engine
) -> None:
    org = billing.customer().organization_external_id
    with pytest.raises(WebhookError, match=r"^url: must be an https:// URL"), engine.begin() as c:
        register_endpoint(c, org, "http://acme.example/hooks")
    with pytest.raises(WebhookError, match=r"^organization: no organization"), engine.begin() as c:
        register_endpoint(c, "nobody", "https://acme.example/hooks")
    with pytest.raises(WebhookError, match=r"^event_types: "), engine.begin() as c:
        register_endpoint(c, org, "https://acme.example/hooks", event_types=["billing.nope.x"])
