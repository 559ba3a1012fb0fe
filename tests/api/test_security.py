"""Authentication, roles, tenant isolation (BOLA), rate limits, idempotency and problem
documents, against the real app on a loopback port and a real warehouse."""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.api.keys import create_key, revoke_key
from dagster_billing.settings import load_settings
from tests.api.conftest import Tenants, client, finalize_invoices, serve

ALL_ROLES = ("admin", "finance", "org_member", "service")
READERS = ("admin", "finance", "org_member")


@dataclass(frozen=True)
class Endpoint:
    name: str
    method: str
    path: str  # {t}: tenant letter; {inv}, {pay}: that tenant's invoice and payment ids
    body: dict[str, Any] | None
    roles: tuple[str, ...]


ENDPOINTS = [
    Endpoint("organization get", "GET", "/organizations/org-{t}", None, READERS),
    Endpoint(
        "organization update",
        "PUT",
        "/organizations/org-{t}",
        {"name": "Renamed"},
        ("admin", "org_member"),
    ),
    Endpoint(
        "entitlements",
        "GET",
        "/organizations/org-{t}/entitlements",
        None,
        (*READERS, "service"),
    ),
    Endpoint(
        "entitlement check",
        "GET",
        "/organizations/org-{t}/entitlements/adapters?quantity=1",
        None,
        (*READERS, "service"),
    ),
    Endpoint("credit balance", "GET", "/organizations/org-{t}/credit-balance", None, READERS),
    Endpoint("credit grant", "POST", "/organizations/org-{t}/credits", {"amount": "5"}, ("admin",)),
    Endpoint(
        "promotion add",
        "POST",
        "/organizations/org-{t}/promotions",
        {"code": "TEN", "percent_off": "10"},
        ("admin",),
    ),
    Endpoint(
        "subscription create",
        "POST",
        "/subscriptions",
        {"organization": "org-{t}", "plan": "starter"},
        ("admin", "org_member"),
    ),
    Endpoint("subscription get", "GET", "/subscriptions/sub-{t}", None, READERS),
    Endpoint(
        "subscription change",
        "POST",
        "/subscriptions/sub-{t}/change",
        {"seats": 4},
        ("admin", "org_member"),
    ),
    Endpoint(
        "subscription cancel",
        "POST",
        "/subscriptions/sub-{t}/cancel",
        {"at_period_end": True},
        ("admin", "org_member"),
    ),
    Endpoint("upcoming invoice", "GET", "/subscriptions/sub-{t}/upcoming-invoice", None, READERS),
    Endpoint("invoice list", "GET", "/invoices?organization=org-{t}", None, READERS),
    Endpoint("invoice get", "GET", "/invoices/{inv}", None, READERS),
    Endpoint("invoice pdf", "GET", "/invoices/{inv}/pdf", None, READERS),
    Endpoint(
        "invoice void", "POST", "/invoices/{inv}/void", {"reason": "test"}, ("admin", "finance")
    ),
    Endpoint(
        "payment create",
        "POST",
        "/payments",
        {"invoice": "{inv}"},
        ("admin", "finance", "org_member"),
    ),
    Endpoint("payment get", "GET", "/payments/{pay}", None, ("admin", "finance", "org_member")),
    Endpoint(
        "payment refund",
        "POST",
        "/payments/{pay}/refund",
        {"reason": "test"},
        ("admin", "finance"),
    ),
    Endpoint(
        "payment method add",
        "POST",
        "/payment-methods",
        {"organization": "org-{t}", "stripe_payment_method_id": "pm_card_visa"},
        ("admin", "org_member"),
    ),
    Endpoint(
        "usage current", "GET", "/usage/current?organization=org-{t}", None, (*READERS, "service")
    ),
    Endpoint(
        "usage history",
        "GET",
        "/usage/history?organization=org-{t}&start=2026-10-01T00:00:00Z&end=2026-10-02T00:00:00Z",
        None,
        (*READERS, "service"),
    ),
]
NEW_ORGANIZATION = Endpoint(
    "organization create",
    "POST",
    "/organizations",
    {"external_id": "org-new", "name": "New", "currency": "USD"},
    ("admin",),
)


@pytest.fixture(scope="module")
def ids(engine: Engine, tenants: Tenants) -> dict[str, dict[str, int]]:
    """Each tenant's newest invoice, and a payment on it."""
    finalize_invoices(engine)
    with engine.begin() as conn:
        found: dict[str, dict[str, int]] = {}
        for t in ("a", "b"):
            invoice = conn.scalar(
                sa.text(
                    "select max(i.id) from dictamesh_billing_invoices i join"
                    " dictamesh_billing_organizations o on o.id = i.organization_id"
                    " where o.external_id = :o"
                ),
                {"o": f"org-{t}"},
            )
            payment = conn.scalar(
                sa.text(
                    "insert into dictamesh_billing_payments (invoice_id, attempt, amount,"
                    " currency, idempotency_key) values (:i, 1, 108.9, 'USD', :k) returning id"
                ),
                {"i": invoice, "k": f"test-payment-{t}"},
            )
            found[t] = {"inv": invoice, "pay": payment}
    return found


def _fill(value: Any, t: str, ids: dict[str, int]) -> Any:
    if isinstance(value, str):
        text = value.format(t=t, **ids)
        return int(text) if text.isdigit() and value.startswith("{") else text
    if isinstance(value, dict):
        return {k: _fill(v, t, ids) for k, v in value.items()}
    return value


def call(base: str, key: str | None, endpoint: Endpoint, t: str, ids: dict, body: Any = ...) -> Any:
    chosen = endpoint.body if body is ... else body
    with client(base, key) as http:
        return http.request(
            endpoint.method,
            _fill(endpoint.path, t, ids[t]),
            json=None if chosen is None else _fill(chosen, t, ids[t]),
        )


@pytest.mark.parametrize("endpoint", ENDPOINTS, ids=lambda e: e.name)
@pytest.mark.parametrize("role", ["org_member", "service"])
def test_another_organizations_object_answers_404_like_a_missing_one(
    api: str, tenants: Tenants, ids: dict, endpoint: Endpoint, role: str
) -> None:
    """BOLA: org A's key on org B's object is refused; where the role may call the
    endpoint at all, with 404 (or the field error a missing cursor gets), never 200."""
    response = call(api, tenants.keys[f"{role}_a"], endpoint, "b", ids)
    if role not in endpoint.roles:
        assert response.status_code == 403, response.text
        return
    assert response.status_code == 404, response.text
    assert response.headers["content-type"] == "application/problem+json"
    missing = dict(ids, z={"inv": 999_999_999, "pay": 999_999_999})
    assert call(api, tenants.keys["admin"], endpoint, "z", missing).status_code == 404


def test_an_invoice_cursor_of_another_organization_is_refused_like_a_missing_one(
    api: str, tenants: Tenants, ids: dict
) -> None:
    with client(api, tenants.keys["org_member_a"]) as http:
        other = http.get("/invoices", params={"starting_after": ids["b"]["inv"]})
        missing = http.get("/invoices", params={"starting_after": 999_999_999})
    assert other.status_code == missing.status_code == 422
    assert other.json()["errors"][0]["field"] == "starting_after"


def test_an_organization_key_lists_only_its_own_invoices(
    api: str, tenants: Tenants, ids: dict
) -> None:
    with client(api, tenants.keys["org_member_a"]) as http:
        listed = http.get("/invoices", params={"limit": 100}).json()["data"]
    assert listed and {i["organization"] for i in listed} == {"org-a"}


@pytest.mark.parametrize("endpoint", [*ENDPOINTS, NEW_ORGANIZATION], ids=lambda e: e.name)
@pytest.mark.parametrize("role", ALL_ROLES)
def test_role_may_call_only_its_endpoints(
    api: str, tenants: Tenants, ids: dict, endpoint: Endpoint, role: str
) -> None:
    """Every role x endpoint on the role's own organization. Writes carry an unknown
    field, so an admitted role gets 422 and nothing changes."""
    key = tenants.keys[role if role in ("admin", "finance") else f"{role}_a"]
    body = None if endpoint.body is None else {**endpoint.body, "unexpected": 1}
    response = call(api, key, endpoint, "a", ids, body=body)
    if role in endpoint.roles:
        assert response.status_code not in (401, 403), response.text
        if body is not None:
            assert response.status_code == 422, response.text
            assert {"field": "unexpected", "detail": "Extra inputs are not permitted"} in (
                response.json()["errors"]
            )
    else:
        assert response.status_code == 403, response.text
        assert role in response.json()["detail"]


def test_no_key_a_wrong_key_and_a_revoked_key_answer_401(
    api: str, engine: Engine, tenants: Tenants
) -> None:
    with engine.begin() as conn:
        token, row = create_key(conn, role="admin", actor="test")
    with client(api, token) as http:
        assert http.get("/organizations/org-a").status_code == 200
    with engine.begin() as conn:
        revoke_key(conn, row["prefix"], actor="test")
        last_used = conn.scalar(
            sa.text("select last_used_at from dictamesh_billing_api_keys where prefix = :p"),
            {"p": row["prefix"]},
        )
    assert last_used is not None
    for key in (None, "dmb_nope_nope", token, token[:-1] + "x"):
        with client(api, key) as http:
            response = http.get("/organizations/org-a")
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.headers["content-type"] == "application/problem+json"


def test_keys_are_stored_hashed_with_a_visible_prefix(engine: Engine) -> None:
    with engine.begin() as conn:
        token, row = create_key(conn, role="service", organization="org-a", actor="test")
        stored = conn.execute(
            sa.text("select prefix, key_hash from dictamesh_billing_api_keys where id = :i"),
            {"i": row["id"]},
        ).one()
    assert token.startswith(f"dmb_{stored.prefix}_")
    assert token not in stored.key_hash and stored.key_hash != token


def test_a_mutation_is_audited_with_the_callers_key_id(
    api: str, engine: Engine, tenants: Tenants
) -> None:
    with client(api, tenants.keys["org_member_a"]) as http:
        response = http.put("/organizations/org-a", json={"email": "ap@a.example"})
    assert response.status_code == 200, response.text
    with engine.connect() as conn:
        actor = conn.scalar(
            sa.text(
                "select actor from dictamesh_billing_audit_log where action ="
                " 'organization.updated' and entity_id = 'org-a' order by id desc limit 1"
            )
        )
        key_id = conn.scalar(
            sa.text(
                "select id from dictamesh_billing_api_keys where role = 'org_member'"
                " and organization_id = (select id from dictamesh_billing_organizations"
                " where external_id = 'org-a') order by id limit 1"
            )
        )
    assert actor.startswith(f"api-key:{key_id}:")


def test_validation_errors_name_every_field(api: str, tenants: Tenants) -> None:
    with client(api, tenants.keys["admin"]) as http:
        response = http.post(
            "/organizations", json={"external_id": "!", "currency": "usd", "surprise": True}
        )
    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    fields = {e["field"] for e in response.json()["errors"]}
    assert fields == {"external_id", "currency", "name", "surprise"}


def test_a_domain_error_names_the_field(api: str, tenants: Tenants) -> None:
    with client(api, tenants.keys["admin"]) as http:
        response = http.post(
            "/subscriptions/sub-a/change",
            json={"plan": "platinum"},
        )
    assert response.status_code == 422
    body = response.json()
    assert (
        body["errors"] == [{"field": "plan", "detail": body["errors"][0]["detail"]}]
        and "unknown plan 'platinum'" in body["detail"]
    )


def test_an_unexpected_failure_answers_500_without_details(engine: Engine) -> None:
    """A broken database connection: neither the problem nor any log line says anything
    about SQL, the server or its password, and no traceback is logged."""
    broken = sa.create_engine("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")
    with engine.begin() as conn:
        token, _ = create_key(conn, role="admin", actor="test")
    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]
    watched = [logging.getLogger(name) for name in ("uvicorn.error", "dagster_billing.api")]
    for logger in watched:
        logger.addHandler(handler)
    served = serve(load_settings(), broken)
    try:
        with client(served.url, token) as http:
            response = http.get("/organizations/org-a")
    finally:
        served.stop()
        for logger in watched:
            logger.removeHandler(handler)
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert "secret" not in response.text and "psycopg" not in response.text.lower()
    logged = [r.getMessage() for r in records]
    assert "unhandled OperationalError on GET /api/v1/billing/organizations/org-a" in logged
    assert not any(r.exc_info for r in records)
    assert not any("secret" in line or "127.0.0.1:1" in line for line in logged)


# --- rate limits ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def limited(engine: Engine, tenants: Tenants) -> Iterator[str]:
    served = serve(load_settings(api_rate_limit="3/minute"), engine)
    yield served.url
    served.stop()


def test_a_keys_flood_gets_429_with_retry_after_and_other_keys_are_unaffected(
    limited: str, tenants: Tenants
) -> None:
    with client(limited, tenants.keys["org_member_a"]) as http:
        statuses = [http.get("/organizations/org-a").status_code for _ in range(5)]
        refused = http.get("/organizations/org-a")
    assert statuses[:3] == [200, 200, 200] and statuses[3:] == [429, 429]
    assert refused.headers["content-type"] == "application/problem+json"
    assert 1 <= int(refused.headers["retry-after"]) <= 60
    with client(limited, tenants.keys["org_member_b"]) as http:
        assert http.get("/organizations/org-b").status_code == 200


# --- idempotency ----------------------------------------------------------------------


def test_a_replayed_post_returns_the_stored_response_and_changes_nothing(
    api: str, engine: Engine, tenants: Tenants
) -> None:
    body = {"amount": "7.50", "description": "goodwill"}
    headers = {"Idempotency-Key": "grant-7-50"}
    with client(api, tenants.keys["admin"]) as http:
        first = http.post("/organizations/org-b/credits", json=body, headers=headers)
        second = http.post("/organizations/org-b/credits", json=body, headers=headers)
        different = http.post(
            "/organizations/org-b/credits", json={**body, "amount": "8"}, headers=headers
        )
    assert first.status_code == second.status_code == 201
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert different.status_code == 422
    assert different.json()["errors"][0]["field"] == "Idempotency-Key"
    with engine.connect() as conn:
        grants = conn.scalar(
            sa.text("select count(*) from dictamesh_billing_credits where description = 'goodwill'")
        )
    assert grants == 1


def test_the_same_idempotency_key_of_another_api_key_is_its_own(api: str, tenants: Tenants) -> None:
    headers = {"Idempotency-Key": "shared-key"}
    with client(api, tenants.keys["admin"]) as http:
        first = http.post("/organizations/org-a/credits", json={"amount": "1"}, headers=headers)
    with client(api, tenants.keys["org_member_a"]) as http:
        other = http.put("/organizations/org-a", json={"locale": "en_GB"}, headers=headers)
        refused = http.post("/organizations/org-a/credits", json={"amount": "1"}, headers=headers)
    assert first.status_code == 201 and other.status_code == 200
    assert refused.status_code == 403  # its own record: run, not replayed


def test_a_repeat_while_the_first_is_running_answers_409(
    api: str, engine: Engine, tenants: Tenants
) -> None:
    """The first request waits on the audit log's lock, which this test holds; its twin
    arrives meanwhile."""
    headers = {"Idempotency-Key": "slow-grant"}
    results: dict[str, Any] = {}

    def first() -> None:
        with client(api, tenants.keys["admin"]) as http:
            results["first"] = http.post(
                "/organizations/org-a/credits", json={"amount": "2"}, headers=headers
            )

    lock = "hashtext('dictamesh_billing_audit_log')"
    with engine.connect() as blocker:
        blocker.execute(sa.text(f"select pg_advisory_lock({lock})"))
        thread = threading.Thread(target=first)
        thread.start()
        running = 0
        for _ in range(200):
            running = blocker.scalar(
                sa.text(
                    "select count(*) from dictamesh_billing_api_idempotency_keys"
                    " where idempotency_key = 'slow-grant' and status = 'running'"
                )
            )
            if running:
                break
            threading.Event().wait(0.05)
        with client(api, tenants.keys["admin"]) as http:
            twin = http.post("/organizations/org-a/credits", json={"amount": "2"}, headers=headers)
        blocker.execute(sa.text(f"select pg_advisory_unlock({lock})"))
        blocker.commit()
    thread.join(timeout=30)
    assert running == 1
    assert twin.status_code == 409, twin.text
    assert results["first"].status_code == 201


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        (
            "/subscriptions",
            {"organization": "org-a", "plan": "starter", "price_override": "0"},
            "price_override",
        ),
        (
            "/subscriptions/sub-a/change",
            {"seats": 9, "effective_at": "2026-01-01T00:00:00Z"},
            "effective_at",
        ),
        ("/subscriptions/sub-a/cancel", {"at": "2026-01-01T00:00:00Z"}, "at"),
    ],
)
def test_an_organization_member_may_not_set_prices_or_backdate(
    api: str, engine: Engine, tenants: Tenants, path: str, body: dict, field: str
) -> None:
    with engine.connect() as conn:
        before = conn.scalar(sa.text("select count(*) from dictamesh_billing_audit_log"))
    with client(api, tenants.keys["org_member_a"]) as http:
        response = http.post(path, json=body)
    assert response.status_code == 403, response.text
    assert response.json()["errors"][0]["field"] == field
    with engine.connect() as conn:
        assert conn.scalar(sa.text("select count(*) from dictamesh_billing_audit_log")) == before


def test_an_organization_member_may_not_change_its_status(api: str, tenants: Tenants) -> None:
    with client(api, tenants.keys["org_member_a"]) as http:
        response = http.put("/organizations/org-a", json={"status": "closed"})
    assert response.status_code == 403 and response.json()["errors"][0]["field"] == "status"
