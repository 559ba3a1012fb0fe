"""Usage: the live period against the plan's quotas, and history by hour or day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query, Request

from dagster_billing.api import schemas
from dagster_billing.api.keys import ApiKey
from dagster_billing.api.problems import field_problem
from dagster_billing.api.routers.common import READ_PROBLEMS, reading, text
from dagster_billing.api.schemas import EXTERNAL_ID, Timestamp
from dagster_billing.api.security import allow, scoped_organization
from dagster_billing.customers import get_organization
from dagster_billing.customers.subscriptions import live_subscription
from dagster_billing.resources.prometheus import PrometheusResource
from dagster_billing.usage.realtime import billed_quantities, current_period_usage
from dagster_billing.warehouse.calendar import billing_period
from dagster_billing.warehouse.schema import metrics, plan_quotas

router = APIRouter(prefix="/usage", tags=["usage"])
READERS = ("admin", "finance", "org_member", "service")
MAX_RANGE = {"hourly": timedelta(days=31), "daily": timedelta(days=366)}


def _organization(key: ApiKey, requested: str | None) -> str:
    chosen = scoped_organization(key, requested)
    if chosen is None:
        raise field_problem("organization", "required for a key that sees every organization")
    return chosen


@router.get("/current", responses=READ_PROBLEMS)
def current_usage(
    request: Request,
    organization: Annotated[str | None, Query(pattern=EXTERNAL_ID)] = None,
    key: ApiKey = Depends(allow(*READERS)),
) -> schemas.CurrentUsage:
    """This billing period so far (with USAGE_ENABLE_REALTIME, the hours Prometheus has
    and the warehouse not yet), against the plan's quota: percent used per metric."""
    org_ext = _organization(key, organization)
    settings = request.app.state.settings
    now = datetime.now(UTC)
    with reading(request) as conn:
        org = get_organization(conn, org_ext)
        live = live_subscription(conn, org["id"], now)
        units = dict(conn.execute(sa.select(metrics.c.id, metrics.c.unit)).all())
        if live is None:
            return schemas.CurrentUsage(
                organization=org_ext, plan=None, period_start=None, period_end=None, metrics=[]
            )
        sub, plan_id, _ = live
        period = billing_period(conn, sub["billing_anchor"], sub["billing_cycle"], now)
        start, end = period.start, period.end
        quotas = dict(
            conn.execute(
                sa.select(plan_quotas.c.metric, plan_quotas.c.included_quantity).where(
                    plan_quotas.c.plan_id == plan_id
                )
            ).all()
        )
        prometheus = (
            PrometheusResource(url=str(settings.prometheus_url), timeout_seconds=5)
            if settings.prometheus_url
            else None
        )
        usage = current_period_usage(
            conn, org_ext, start, now, prometheus, realtime=settings.usage_enable_realtime
        )
        billed = billed_quantities(
            conn, {m: usage.quantities.get(m, Decimal(0)) for m in units}, start, end
        )
    out = []
    for metric in sorted(units):
        used = billed[metric]
        quota = quotas.get(metric)
        percent = (used * 100 / quota).quantize(Decimal("0.01")) if quota else None
        out.append(
            schemas.MetricUsage(
                metric=metric,
                unit=units[metric],
                used=text(used) or "0",
                quota=text(quota),
                percent_used=text(percent),
            )
        )
    return schemas.CurrentUsage(
        organization=org_ext, plan=plan_id, period_start=start, period_end=end, metrics=out
    )


@router.get("/history", responses=READ_PROBLEMS)
def usage_history(
    request: Request,
    start: Timestamp,
    end: Timestamp,
    organization: Annotated[str | None, Query(pattern=EXTERNAL_ID)] = None,
    granularity: Literal["hourly", "daily"] = "daily",
    key: ApiKey = Depends(allow(*READERS)),
) -> schemas.UsageHistory:
    """Metered quantities in [start, end) per metric and hour or UTC day (at most 31 days
    hourly, 366 daily)."""
    org_ext = _organization(key, organization)
    if end <= start:
        raise field_problem("end", "must be after start")
    if end - start > MAX_RANGE[granularity]:
        raise field_problem(
            "end", f"{granularity} history covers at most {MAX_RANGE[granularity].days} days"
        )
    unit = "hour" if granularity == "hourly" else "day"
    with reading(request) as conn:
        org = get_organization(conn, org_ext)
        rows = conn.execute(
            sa.text(
                f"select metric, date_trunc('{unit}', hour_start, 'UTC') as bucket,"
                " sum(quantity) as quantity from dictamesh_billing_usage_metrics"
                " where organization_id = :org and hour_start >= :start and hour_start < :end"
                " group by 1, 2 order by 2, 1"
            ),
            {"org": org["id"], "start": start, "end": end},
        ).all()
    return schemas.UsageHistory(
        organization=org_ext,
        granularity=granularity,
        start=start,
        end=end,
        data=[
            schemas.UsagePoint(metric=r.metric, start=r.bucket, quantity=text(r.quantity) or "0")
            for r in rows
        ],
    )
