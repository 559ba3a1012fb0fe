"""Current-period usage: the warehouse's ingested hours plus, with USAGE_ENABLE_REALTIME,
the hours Prometheus has and `usage_hourly` has not ingested yet (the live hour, and any
closed hour still waiting for its run)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.usage.hourly import HOUR, PromQuerier, read_hour, to_catalog_units
from dagster_billing.usage.store import organization_ids

# Hours further back than this are assumed ingested or lost; the trailing schedule
# re-ingests the same window, so this is what may still be missing from the warehouse.
LIVE_WINDOW_HOURS = 3


@dataclass
class PeriodUsage:
    """Per metric: sums in catalog units (storage: GB-hours; divide by the period's hours)."""

    quantities: dict[str, Decimal] = field(default_factory=dict)
    live_hours: list[datetime] = field(default_factory=list)


def current_period_usage(
    conn: Connection,
    organization: str,
    period_start: datetime,
    now: datetime,
    prometheus: PromQuerier | None = None,
    realtime: bool = True,
) -> PeriodUsage:
    """Usage of `organization` (external id) in [period_start, now)."""
    internal = organization_ids(conn, [organization]).get(organization)
    if internal is None:
        raise ValueError(f"organization: unknown organization {organization!r}")
    current = now.replace(minute=0, second=0, microsecond=0)
    live: list[datetime] = []
    if realtime and prometheus is not None:
        first = max(period_start, current - (LIVE_WINDOW_HOURS - 1) * HOUR)
        ingested = set(
            conn.scalars(
                sa.text(
                    "select distinct hour_start from dictamesh_billing_usage_ingestions"
                    " where hour_start >= :first and hour_start <= :current"
                ),
                {"first": first, "current": current},
            )
        )
        hour = first
        while hour <= current:
            if hour not in ingested:
                live.append(hour)
            hour += HOUR
    rows = conn.execute(
        sa.text(
            "select metric, sum(quantity) from dictamesh_billing_usage_metrics"
            " where organization_id = :org and hour_start >= :start and hour_start < :end"
            " and not hour_start = any(:live) group by metric"
        ),
        {"org": internal, "start": period_start, "end": now, "live": live},
    )
    usage = PeriodUsage({metric: total for metric, total in rows}, live)
    for hour in live:
        reading = read_hour(prometheus, hour, organization=organization)
        for (_, metric), raw in reading.quantities.items():
            usage.quantities[metric] = usage.quantities.get(metric, Decimal(0)) + to_catalog_units(
                metric, raw
            )
    return usage


_BILLED = sa.text(
    "select u.metric, dictamesh_billing_billed_usage(u.total, m.aggregation,"
    " extract(epoch from cast(:end as timestamptz) - cast(:start as timestamptz)))"
    " from unnest(cast(:metrics as text[]), cast(:totals as numeric[])) as u(metric, total)"
    " join dictamesh_billing_metrics m on m.id = u.metric"
)


def billed_quantities(
    conn: Connection, totals: dict[str, Decimal], period_start: datetime, period_end: datetime
) -> dict[str, Decimal]:
    """Per-metric totals of [period_start, period_end) as billing counts them (storage: the
    average over every hour of the whole period), by the warehouse's one definition
    (`dictamesh_billing_billed_usage`), which the dbt models use too."""
    rows = conn.execute(
        _BILLED,
        {
            "metrics": list(totals),
            "totals": list(totals.values()),
            "start": period_start,
            "end": period_end,
        },
    )
    return dict(rows.tuples().all())
