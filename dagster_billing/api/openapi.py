"""The OpenAPI document: generated from the app, committed as docs/openapi.json.

`billing api --openapi docs/openapi.json` rewrites the committed file;
`tests/api/test_openapi.py` fails when it is out of date.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from dagster_billing.settings import PROJECT_ROOT

COMMITTED = PROJECT_ROOT / "docs" / "openapi.json"
IDEMPOTENCY_HEADER: dict[str, Any] = {
    "name": "Idempotency-Key",
    "in": "header",
    "required": False,
    "description": "Replays the first response for 24 h per API key (see docs/api.md).",
    "schema": {"type": "string", "pattern": "^[ -~]{1,255}$"},
}


def install(app: FastAPI) -> None:
    """Every POST documents the Idempotency-Key header the middleware honours."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(
                title=app.title,
                version=app.version,
                description=app.description,
                routes=app.routes,
            )
            for path in schema["paths"].values():
                if "post" in path:
                    path["post"].setdefault("parameters", []).append(IDEMPOTENCY_HEADER)
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def render(app: FastAPI) -> str:
    return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"
