"""`Idempotency-Key` on every POST: the first response is kept 24 h per API key.

A repeat with the same key and the same request gets the stored response back (header
`Idempotent-Replayed: true`); the same key with another request answers 422; a repeat
while the first is still running answers 409. The reservation is a row whose primary key
is (api key, idempotency key), so two racing requests cannot both run. Responses that a
retry should re-run (401, 429, 5xx) are not kept.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import sqlalchemy as sa
from fastapi import FastAPI, Request, Response
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.types import ASGIApp, Receive, Scope, Send

from dagster_billing.api.problems import Problem, field_problem, render
from dagster_billing.api.security import bearer_key
from dagster_billing.warehouse.schema import api_idempotency_keys as records

HEADER = "Idempotency-Key"
TTL = sa.text("interval '24 hours'")
NOT_KEPT = {401, 429}


@dataclass(frozen=True)
class Stored:
    request_hash: str
    status: str
    response_status: int | None
    response_body: bytes | None
    response_type: str | None


def reserve(engine: Engine, key_id: int, key: str, digest: str) -> Stored | None:
    """None when this request may run; else what is already there."""
    scope = (records.c.api_key_id == key_id) & (records.c.idempotency_key == key)
    with engine.begin() as conn:
        conn.execute(sa.delete(records).where(scope, records.c.created_at < sa.func.now() - TTL))
        reserved = conn.execute(
            insert(records)
            .values(api_key_id=key_id, idempotency_key=key, request_hash=digest)
            .on_conflict_do_nothing()
            .returning(records.c.api_key_id)
        ).first()
        if reserved is not None:
            return None
        row = conn.execute(
            sa.select(
                records.c.request_hash,
                records.c.status,
                records.c.response_status,
                records.c.response_body,
                records.c.response_type,
            ).where(scope)
        ).one()
        return Stored(*row)


def complete(engine: Engine, key_id: int, key: str, status: int, body: bytes, kind: str) -> None:
    scope = (records.c.api_key_id == key_id) & (records.c.idempotency_key == key)
    with engine.begin() as conn:
        if status in NOT_KEPT or status >= 500:
            conn.execute(sa.delete(records).where(scope))
            return
        conn.execute(
            sa.update(records)
            .where(scope)
            .values(
                status="done",
                response_status=status,
                response_body=body,
                response_type=kind,
                completed_at=sa.func.now(),
            )
        )


def release(engine: Engine, key_id: int, key: str) -> None:
    scope = (records.c.api_key_id == key_id) & (records.c.idempotency_key == key)
    with engine.begin() as conn:
        conn.execute(sa.delete(records).where(scope))


def install(app: FastAPI) -> None:
    app.add_middleware(_KeyedPosts)


class _KeyedPosts:
    """Sends only a POST carrying the header through the idempotency middleware; every
    other request skips it (and the task group a BaseHTTPMiddleware costs)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app
        self.keyed = BaseHTTPMiddleware(app, dispatch=_idempotent)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        keyed = scope["type"] == "http" and scope["method"] == "POST"
        if keyed and HEADER.lower().encode() in dict(scope["headers"]):
            await self.keyed(scope, receive, send)
        else:
            await self.app(scope, receive, send)


async def _idempotent(request: Request, call_next: RequestResponseEndpoint) -> Response:
    key = request.headers[HEADER]
    if not 1 <= len(key) <= 255 or not all(" " <= c <= "~" for c in key):
        return render(request, field_problem(HEADER, "must be 1-255 printable ASCII characters"))
    engine: Engine = request.app.state.engine
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    api_key = await run_in_threadpool(
        bearer_key, engine, token if scheme.lower() == "bearer" else None
    )
    if api_key is None:  # the route answers 401; nothing to scope the key to
        return await call_next(request)
    body = await request.body()
    digest = hashlib.sha256(
        b"\n".join([request.method.encode(), request.url.path.encode(), body])
    ).hexdigest()
    stored = await run_in_threadpool(reserve, engine, api_key.id, key, digest)
    if stored is not None:
        if stored.request_hash != digest:
            return render(
                request,
                field_problem(HEADER, "already used with a different request", status=422),
            )
        if stored.status == "running":
            return render(request, Problem(409, f"{HEADER}: the first request is still running"))
        return Response(
            content=stored.response_body,
            status_code=stored.response_status or 200,
            media_type=stored.response_type,
            headers={"Idempotent-Replayed": "true"},
        )
    try:
        response = await call_next(request)
        content = b"".join([chunk async for chunk in response.body_iterator])
    except BaseException:
        await run_in_threadpool(release, engine, api_key.id, key)
        raise
    kind = response.headers.get("content-type", "application/json")
    await run_in_threadpool(complete, engine, api_key.id, key, response.status_code, content, kind)
    return Response(
        content=content,
        status_code=response.status_code,
        headers={k: v for k, v in response.headers.items() if k != "content-length"},
    )
