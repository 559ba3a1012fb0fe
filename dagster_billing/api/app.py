"""The FastAPI app factory, served by `billing api`.

Routers call domain functions over a connection from `app.state.engine`; they never run
assets. Each resource adds its router in `create_app`.
"""

from __future__ import annotations

from fastapi import FastAPI
from sqlalchemy.engine import Engine

from dagster_billing.api import webhooks
from dagster_billing.settings import Settings


def create_app(settings: Settings, engine: Engine) -> FastAPI:
    """The app over one warehouse engine (the caller owns and disposes it)."""
    app = FastAPI(title="DictaMesh Billing", version="1")
    app.state.settings = settings
    app.state.engine = engine
    app.include_router(webhooks.router)

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    return app
