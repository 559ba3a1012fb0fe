"""The committed OpenAPI document is the one the app serves."""

from __future__ import annotations

import json

import httpx

from dagster_billing.api.openapi import COMMITTED


def test_the_committed_schema_is_the_served_one(api: str) -> None:
    served = httpx.get(f"{api}/openapi.json", trust_env=False).json()
    assert json.loads(COMMITTED.read_text()) == served, (
        "docs/openapi.json is stale: run `billing api --openapi docs/openapi.json`"
    )
