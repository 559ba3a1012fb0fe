"""`POST /webhooks/stripe`: verify the signature on the raw body, store, answer 2xx.

Processing happens in the reconciliation sensor, so Stripe gets its answer at once and
a slow or failing handler never makes it redeliver. A bad signature is 400 with one line
saying which check failed; nothing of the body is logged.
"""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy.engine import Engine
from starlette.concurrency import run_in_threadpool

from dagster_billing.payments.webhooks import (
    SignatureError,
    parse_event,
    store_event,
    verify_signature,
)

router = APIRouter()


@router.post("/webhooks/stripe", include_in_schema=False)
async def stripe_webhook(request: Request) -> JSONResponse:
    payload = await request.body()
    settings = request.app.state.settings
    try:
        verify_signature(
            payload,
            request.headers.get("Stripe-Signature"),
            settings.stripe_webhook_secrets,
            now=datetime.now(UTC),
        )
        event = parse_event(payload)
    except SignatureError as exc:
        return JSONResponse({"error": str(exc)}, status_code=400)
    stored = await run_in_threadpool(_store, request.app.state.engine, event)
    return JSONResponse({"received": True, "duplicate": not stored})


def _store(engine: Engine, event: dict) -> bool:
    with engine.begin() as conn:
        return store_event(conn, event)
