"""The billing calendar, asked of the warehouse: periods come from the SQL functions of
migration 0011 (`dictamesh_billing_period`), the ones the dbt models compile to, so a
period Python acts on (cancel at period end, the usage API's current period) is the
period dbt bills. Queries that need periods for many rows call the functions in SQL."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.engine import Connection

_PERIOD = sa.text(
    "select p.period_start, p.period_end, p.fee_period_start, p.fee_period_end"
    " from dictamesh_billing_period(cast(:anchor as timestamptz), cast(:cycle as text),"
    " dictamesh_billing_period_index(cast(:anchor as timestamptz), cast(:at as timestamptz))) p"
)


@dataclass(frozen=True)
class BillingPeriod:
    """The monthly usage period holding an instant, and the fee period around it (the
    same month, or the term year of an annual plan)."""

    start: datetime
    end: datetime
    fee_start: datetime
    fee_end: datetime


def billing_period(conn: Connection, anchor: datetime, cycle: str, at: datetime) -> BillingPeriod:
    """The period of a subscription anchored at `anchor`, billed `cycle`, holding `at`."""
    row = conn.execute(_PERIOD, {"anchor": anchor, "cycle": cycle, "at": at}).one()
    return BillingPeriod(*(bound.astimezone(UTC) for bound in row))
