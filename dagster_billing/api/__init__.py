"""The HTTP API: one FastAPI app (`create_app`), one router per resource."""

from dagster_billing.api.app import create_app

__all__ = ["create_app"]
