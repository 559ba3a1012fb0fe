"""Small pieces every router shares: the engine, path parameters, decimal text."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from fastapi import Path, Request
from sqlalchemy.engine import Connection, Engine

from dagster_billing.api.problems import problem_responses
from dagster_billing.api.schemas import EXTERNAL_ID, InvoiceLine

OrgId = Annotated[str, Path(pattern=EXTERNAL_ID, description="The organization's external id")]
SubId = Annotated[str, Path(pattern=EXTERNAL_ID, description="The subscription's external id")]
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]

READ_PROBLEMS = problem_responses(400, 401, 403, 404, 422, 429)
WRITE_PROBLEMS = problem_responses(400, 401, 403, 404, 409, 415, 422, 429)


def engine(request: Request) -> Engine:
    return request.app.state.engine


def reading(request: Request) -> Connection:
    """A connection for reads in autocommit mode: each statement sees committed data, and
    no transaction is begun and rolled back around it (two round trips per request)."""
    return engine(request).connect().execution_options(isolation_level="AUTOCOMMIT")


def text(value: Any) -> str | None:
    """Decimals as plain strings (no exponent), None as None."""
    if value is None:
        return None
    return format(value, "f") if isinstance(value, Decimal) else str(value)


def line_out(line: Any) -> InvoiceLine:
    """An invoice line, from a finalized line row or a draft's line alike."""
    return InvoiceLine(
        line_number=line.line_number,
        kind=line.kind,
        description=line.description,
        metric=line.metric,
        quantity=text(line.quantity) or "0",
        unit_amount=text(line.unit_amount),
        amount=text(line.amount) or "0",
        period_start=line.period_start,
        period_end=line.period_end,
    )
