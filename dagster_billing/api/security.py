"""Who is calling: the bearer API key, its role, its rate limit, its organization.

Every route states the roles it serves (`allow(...)`); organization roles then see only
their own organization's objects, and another organization's id answers 404 exactly as
a missing one does (`visible`), so ids cannot be probed.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from limits import parse
from limits.storage import storage_from_string
from limits.strategies import MovingWindowRateLimiter
from sqlalchemy.engine import Engine

from dagster_billing.api.keys import ApiKey, authenticate
from dagster_billing.api.problems import Problem
from dagster_billing.customers import NotFoundError
from dagster_billing.settings import Settings

bearer = HTTPBearer(auto_error=False, description="An API key: `Authorization: Bearer dmb_...`")


class RateLimiter:
    """One moving window per key (the `limits` library; in-process unless
    API_RATE_LIMIT_STORAGE names Redis or Memcached), so one key's flood never uses
    another key's allowance."""

    def __init__(self, settings: Settings) -> None:
        self.rate = parse(settings.api_rate_limit)
        self.limiter = MovingWindowRateLimiter(storage_from_string(settings.api_rate_limit_storage))

    def check(self, key: ApiKey) -> None:
        if self.limiter.hit(self.rate, "api-key", str(key.id)):
            return
        reset = self.limiter.get_window_stats(self.rate, "api-key", str(key.id)).reset_time
        retry = max(1, math.ceil(reset - time.time()))
        raise Problem(
            429,
            f"rate limit of {self.rate} for this API key exceeded; retry in {retry} s",
            headers={"Retry-After": str(retry)},
        )


def bearer_key(engine: Engine, token: str | None) -> ApiKey | None:
    """The key `token` is; in autocommit mode, as its statements are independent: one
    round trip per request instead of three (begin, select, commit)."""
    if not token:
        return None
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        return authenticate(conn, token.strip())


def caller(
    request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(bearer)
) -> ApiKey:
    """The authenticated key (401 otherwise), counted against its rate limit."""
    key = bearer_key(request.app.state.engine, credentials.credentials if credentials else None)
    if key is None:
        raise Problem(
            401,
            "a valid API key is required: Authorization: Bearer <key>",
            headers={"WWW-Authenticate": "Bearer"},
        )
    request.app.state.rate_limiter.check(key)
    request.state.api_key = key
    return key


def allow(*roles: str) -> Callable[..., ApiKey]:
    """A dependency admitting only `roles` (403 names the caller's role)."""

    async def dependency(key: ApiKey = Depends(caller)) -> ApiKey:
        # async: no database here, so no second trip through the threadpool
        if key.role not in roles:
            raise Problem(403, f"role {key.role!r} may not call this endpoint")
        return key

    return dependency


def visible(key: ApiKey, organization_id: int, entity: str, ident: str) -> None:
    """404 (the same as missing) for an object of another organization."""
    if not key.sees_all and key.organization_id != organization_id:
        raise NotFoundError(entity, ident)


def scoped_organization(key: ApiKey, requested: str | None) -> str | None:
    """The organization a list or usage call is about: an organization key's own (another
    one is not found), or what an all-seeing key asked for."""
    if key.sees_all:
        return requested
    if requested is not None and requested != key.organization:
        raise NotFoundError("organization", requested)
    return key.organization


# How far in the past a non-admin caller's effective time may lie (clock skew, retries).
BACKDATE_TOLERANCE = timedelta(minutes=5)


def admin_only(key: ApiKey, **fields: object) -> None:
    """Fields only an admin may set: a custom price, or a time in the past (a backdated
    change re-prices periods already billed). 403 names the first one given."""
    if key.role == "admin":
        return
    earliest = datetime.now(UTC) - BACKDATE_TOLERANCE
    for name, value in fields.items():
        if value is None:
            continue
        if isinstance(value, datetime) and value >= earliest:
            continue
        detail = (
            "only an admin may set it"
            if not isinstance(value, datetime)
            else ("only an admin may give a time in the past")
        )
        raise Problem(403, f"{name}: {detail}", errors=[{"field": name, "detail": detail}])
