"""RFC 9457 problem documents: every error the API returns is one, naming the field.

No handler puts an exception's text in a response unless the exception was written for
callers (CustomerError, NotFoundError, ...): driver errors can quote SQL and values.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from dagster_billing.customers import CustomerError, NotFoundError
from dagster_billing.customers.entitlements import EntitlementExceededError
from dagster_billing.invoicing import InvoicingError
from dagster_billing.payments import PaymentError

MEDIA_TYPE = "application/problem+json"
log = logging.getLogger("dagster_billing.api")

TITLES = {
    400: "Bad request",
    401: "Unauthorized",
    402: "Payment required",
    403: "Forbidden",
    404: "Not found",
    405: "Method not allowed",
    409: "Conflict",
    415: "Unsupported media type",
    422: "Unprocessable content",
    429: "Too many requests",
    500: "Internal server error",
    501: "Not implemented",
    502: "Bad gateway",
    503: "Service unavailable",
}

PROBLEM_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["type", "title", "status"],
    "properties": {
        "type": {"type": "string"},
        "title": {"type": "string"},
        "status": {"type": "integer"},
        "detail": {"type": "string"},
        "instance": {"type": "string"},
        "errors": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["field", "detail"],
                "properties": {"field": {"type": "string"}, "detail": {"type": "string"}},
            },
        },
        "limit": {"type": "string"},
        "failure_code": {"type": "string"},
        "decline_code": {"type": "string"},
        "payment": {"type": "integer"},
    },
}


def problem_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI entries for the problem documents a route can answer."""
    return {
        status: {
            "description": TITLES.get(status, "Problem"),
            "content": {MEDIA_TYPE: {"schema": PROBLEM_SCHEMA}},
        }
        for status in statuses
    }


class Problem(Exception):  # noqa: N818 (a response, not an error of ours)
    """Raised by routes and dependencies; rendered as a problem document."""

    def __init__(
        self,
        status: int,
        detail: str,
        *,
        errors: Sequence[Mapping[str, str]] = (),
        headers: Mapping[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.errors = list(errors)
        self.headers = dict(headers or {})
        self.extra = extra


def field_problem(field: str, detail: str, status: int = 422) -> Problem:
    return Problem(status, f"{field}: {detail}", errors=[{"field": field, "detail": detail}])


def message_problem(message: str, status: int = 422) -> Problem:
    """A `field: what is wrong` message (PaymentError's shape) as a problem naming the field."""
    field, sep, detail = message.partition(": ")
    if not sep or not field or " " in field:
        return Problem(status, message)
    return field_problem(field, detail, status)


def render(request: Request, problem: Problem) -> JSONResponse:
    body: dict[str, Any] = {
        "type": "about:blank",
        "title": TITLES.get(problem.status, "Problem"),
        "status": problem.status,
        "detail": problem.detail,
        "instance": request.url.path,
        **{name: value for name, value in problem.extra.items() if value is not None},
    }
    if problem.errors:
        body["errors"] = problem.errors
    return JSONResponse(body, problem.status, headers=problem.headers, media_type=MEDIA_TYPE)


def _field(loc: Sequence[Any]) -> str:
    """('body', 'changes', 0, 'at') -> 'changes[0].at'; query and path keep their name."""
    parts = list(loc[1:]) if loc and loc[0] in ("body", "query", "path", "header") else list(loc)
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or (str(loc[0]) if loc else "body")


def install(app: FastAPI) -> None:
    @app.exception_handler(Problem)
    async def _problem(request: Request, exc: Problem) -> JSONResponse:
        return render(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"field": _field(e.get("loc", ())), "detail": str(e.get("msg", "invalid"))}
            for e in exc.errors()
        ]
        detail = "; ".join(f"{e['field']}: {e['detail']}" for e in errors[:5])
        return render(request, Problem(422, detail, errors=errors))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        detail = exc.detail if isinstance(exc.detail, str) else TITLES.get(exc.status_code, "")
        return render(request, Problem(exc.status_code, detail, headers=exc.headers))

    @app.exception_handler(CustomerError)
    async def _customer(request: Request, exc: CustomerError) -> JSONResponse:
        return render(request, field_problem(exc.field, exc.detail))

    @app.exception_handler(NotFoundError)
    async def _not_found(request: Request, exc: NotFoundError) -> JSONResponse:
        return render(request, Problem(404, str(exc)))

    @app.exception_handler(EntitlementExceededError)
    async def _entitlement(request: Request, exc: EntitlementExceededError) -> JSONResponse:
        return render(request, Problem(403, str(exc), limit=exc.limit))

    @app.exception_handler(InvoicingError)
    async def _invoicing(request: Request, exc: InvoicingError) -> JSONResponse:
        return render(request, Problem(409, str(exc)))

    @app.exception_handler(PaymentError)
    async def _payment(request: Request, exc: PaymentError) -> JSONResponse:
        return render(request, message_problem(str(exc)))

    app.add_middleware(_AnswerUnexpected)


class _AnswerUnexpected:
    """Outermost: answers 500 itself, so Starlette never re-raises the exception for the
    server to log with its traceback (which can quote SQL and values). Plain ASGI: a
    BaseHTTPMiddleware would cost every request a task group and a memory stream."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, tracked)
        except Exception as exc:
            log.error("unhandled %s on %s %s", type(exc).__name__, scope["method"], scope["path"])
            if not started:  # else the client sees the connection end mid-response
                request = Request(scope)
                await render(request, Problem(500, "the request failed; it has been logged"))(
                    scope, receive, send
                )
