"""Quota thresholds: organizations whose usage in the current billing period reached 80%
or 100% of their plan's quota get one `billing.usage.threshold_reached` event each.

Exactly once per organization, metric, period and threshold: the crossing row's primary
key and the outbox row's `dedupe_key` are both unique, and both are written by one
statement, so a sensor tick that runs twice (or two ticks at once) adds nothing.
Storage is compared as billed: GB-hours so far divided by the period's hours, which only
grows during the period, so a crossing never has to be taken back.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

THRESHOLDS = (80, 100)
EVENT_TYPE = "billing.usage.threshold_reached"


@dataclass(frozen=True)
class Crossing:
    organization: str
    metric: str
    threshold: int
    period_start: datetime
    usage: Decimal
    quota: Decimal


def add_months(anchor: datetime, months: int) -> datetime:
    """The anchor moved by whole months; day 29-31 falls back to a shorter month's last
    day and returns afterwards (docs/rate-card.md: Jan 31 -> Feb 28 -> Mar 31)."""
    index = anchor.year * 12 + anchor.month - 1 + months
    year, month = divmod(index, 12)
    day = min(anchor.day, calendar.monthrange(year, month + 1)[1])
    return anchor.replace(year=year, month=month + 1, day=day)


def current_period(anchor: datetime, now: datetime) -> tuple[datetime, datetime]:
    """The monthly usage period containing `now` (annual plans bill usage monthly too)."""
    months = (now.year - anchor.year) * 12 + now.month - anchor.month
    start = add_months(anchor, months)
    while start > now:
        months -= 1
        start = add_months(anchor, months)
    while add_months(anchor, months + 1) <= now:
        months += 1
        start = add_months(anchor, months)
    return start, add_months(anchor, months + 1)


_SUBSCRIPTIONS = """
select s.organization_id, s.billing_anchor, s.current_period_start, s.current_period_end,
       coalesce((select c.plan_id from dictamesh_billing_subscription_changes c
                 where c.subscription_id = s.id and c.effective_at <= :now
                   and c.plan_id is not null
                 order by c.effective_at desc limit 1), s.plan_id) as plan_id
from dictamesh_billing_subscriptions s
where s.status in ('active', 'past_due') and s.started_at <= :now
  and (s.cancel_at is null or s.cancel_at > :now)
"""

_CROSSINGS = f"""
with periods as (
    select * from unnest(cast(:orgs as bigint[]), cast(:starts as timestamptz[]),
                         cast(:ends as timestamptz[]), cast(:plans as text[]))
        as p(organization_id, period_start, period_end, plan_id)
),
usage as (
    select p.organization_id, u.metric, sum(u.quantity) as total
    from periods p
    join dictamesh_billing_usage_metrics u
        on u.organization_id = p.organization_id
        and u.hour_start >= p.period_start and u.hour_start < p.period_end
    group by p.organization_id, u.metric
),
billed as (
    select p.organization_id, p.period_start, p.period_end, p.plan_id, q.metric,
           q.included_quantity as quota,
           case when m.aggregation = 'average'
                then round(u.total / (extract(epoch from p.period_end - p.period_start) / 3600), 6)
                else u.total end as usage
    from periods p
    join dictamesh_billing_plan_quotas q on q.plan_id = p.plan_id
    join dictamesh_billing_metrics m on m.id = q.metric
    join usage u on u.organization_id = p.organization_id and u.metric = q.metric
    where q.included_quantity > 0
),
inserted as (
    insert into dictamesh_billing_usage_threshold_crossings (organization_id, metric,
        period_start, threshold, period_end, plan_id, quota, usage, event_id, crossed_at)
    select b.organization_id, b.metric, b.period_start, t.threshold, b.period_end, b.plan_id,
           b.quota, b.usage, gen_random_uuid(), :now
    from billed b cross join (values {", ".join(f"({t})" for t in THRESHOLDS)}) as t(threshold)
    where b.usage * 100 >= b.quota * t.threshold
    on conflict do nothing
    returning *
)
insert into dictamesh_billing_outbox (event_id, event_type, aggregate_type, aggregate_id,
    dedupe_key, payload, occurred_at)
select i.event_id, :event_type, 'organization', o.external_id,
       'usage-threshold:' || i.organization_id || ':' || i.metric || ':'
           || to_char(i.period_start at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
           || ':' || i.threshold,
       jsonb_build_object(
           'organization_id', o.external_id, 'metric', i.metric, 'threshold', i.threshold,
           'plan_id', i.plan_id, 'quota', i.quota::text, 'usage', i.usage::text,
           'period_start', i.period_start, 'period_end', i.period_end),
       i.crossed_at
from inserted i join dictamesh_billing_organizations o on o.id = i.organization_id
on conflict (dedupe_key) do nothing
returning aggregate_id, payload
"""


def record_threshold_crossings(conn: Connection, now: datetime) -> list[Crossing]:
    """Write a crossing and its outbox event for each new 80%/100% crossing at `now`."""
    conn.execute(
        sa.text("select pg_advisory_xact_lock(hashtext('dictamesh_billing_usage_thresholds'))")
    )
    orgs, starts, ends, plans = [], [], [], []
    for org, anchor, period_start, period_end, plan in conn.execute(
        sa.text(_SUBSCRIPTIONS), {"now": now}
    ):
        if period_start is None or period_end is None or not period_start <= now < period_end:
            period_start, period_end = current_period(anchor, now)
        orgs.append(org)
        starts.append(period_start)
        ends.append(period_end)
        plans.append(plan)
    if not orgs:
        return []
    rows = conn.execute(
        sa.text(_CROSSINGS),
        {
            "orgs": orgs,
            "starts": starts,
            "ends": ends,
            "plans": plans,
            "now": now,
            "event_type": EVENT_TYPE,
        },
    )
    return [
        Crossing(
            organization,
            payload["metric"],
            payload["threshold"],
            datetime.fromisoformat(payload["period_start"]),
            Decimal(payload["usage"]),
            Decimal(payload["quota"]),
        )
        for organization, payload in rows
    ]
