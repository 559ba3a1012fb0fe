"""The FastAPI app factory, served by `billing api`.

Routers call domain functions over a connection from `app.state.engine`; they never run
assets. Each resource adds its router in `create_app`; all sit under /api/v1/billing.
"""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from dagster_billing.api import idempotency, openapi, problems, webhooks
from dagster_billing.api.routers import invoices, organizations, payments, subscriptions, usage
from dagster_billing.api.security import RateLimiter
from dagster_billing.observability import observe_app
from dagster_billing.settings import Settings

PREFIX = "/api/v1/billing"
DESCRIPTION = """Organizations, subscriptions, invoices, payments and usage of DictaMesh
Billing. Authenticate with an API key (`Authorization: Bearer dmb_...`, made by
`billing api-key create`). Errors are RFC 9457 problem documents
(`application/problem+json`). Every POST honours an `Idempotency-Key` header.
See docs/api.md."""


def create_app(settings: Settings, engine: Engine) -> FastAPI:
    """The app over one warehouse engine (the caller owns and disposes it)."""
    app = FastAPI(title="DictaMesh Billing", version="1", description=DESCRIPTION)
    app.state.settings = settings
    app.state.engine = engine
    app.state.rate_limiter = RateLimiter(settings)
    app.include_router(webhooks.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    for module in (organizations, subscriptions, invoices, payments, usage):
        app.include_router(module.router, prefix=PREFIX)
    idempotency.install(app)
    problems.install(app)  # its middleware wraps the idempotency one: added last, runs first
    openapi.install(app)
    observe_app(app, engine)
    return app
