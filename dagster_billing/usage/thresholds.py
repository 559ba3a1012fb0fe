"""Quota thresholds: organizations whose usage in the current billing period reached 80%
or 100% of their plan's quota get one `billing.usage.threshold_reached` event each.

Exactly once per organization, metric, period and threshold: the crossing row's primary
key and the outbox row's `dedupe_key` are both unique, both written in one transaction
(the event through `events.outbox.write_events`, like every event), under an advisory
lock, so a sensor tick that runs twice (or two ticks at once) adds nothing.
Periods and usage are the warehouse's, as dbt bills them: the monthly usage period holding
now (`dictamesh_billing_period`), and storage as billed, GB-hours so far averaged over the
whole period's hours (`dictamesh_billing_billed_usage`), which only grows during the
period, so a crossing never has to be taken back.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.events.catalog import usage_threshold_reached
from dagster_billing.events.outbox import event_id, write_events

THRESHOLDS = (80, 100)


@dataclass(frozen=True)
class Crossing:
    organization: str
    metric: str
    threshold: int
    period_start: datetime
    usage: Decimal
    quota: Decimal


_CROSSINGS = f"""
with periods as (
    select s.organization_id, p.period_start, p.period_end,
           coalesce((select c.plan_id from dictamesh_billing_subscription_changes c
                     where c.subscription_id = s.id and c.effective_at <= :now
                       and c.plan_id is not null
                     order by c.effective_at desc limit 1), s.plan_id) as plan_id
    from dictamesh_billing_subscriptions s
    cross join lateral dictamesh_billing_period(s.billing_anchor, s.billing_cycle,
        dictamesh_billing_period_index(s.billing_anchor, :now)) p
    where s.status in ('active', 'past_due') and s.started_at <= :now
      and (s.cancel_at is null or s.cancel_at > :now)
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
           dictamesh_billing_billed_usage(u.total, m.aggregation,
               extract(epoch from p.period_end - p.period_start)) as usage
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
select i.organization_id, o.external_id, i.metric, i.threshold, i.plan_id, i.quota,
       i.usage, i.period_start, i.period_end, i.crossed_at
from inserted i join dictamesh_billing_organizations o on o.id = i.organization_id
"""


def record_threshold_crossings(conn: Connection, now: datetime) -> list[Crossing]:
    """Write a crossing and its outbox event for each new 80%/100% crossing at `now`."""
    conn.execute(
        sa.text("select pg_advisory_xact_lock(hashtext('dictamesh_billing_usage_thresholds'))")
    )
    rows = conn.execute(sa.text(_CROSSINGS), {"now": now}).all()
    events = [
        usage_threshold_reached(
            organization_db_id=row.organization_id,
            organization_id=row.external_id,
            metric=row.metric,
            threshold=row.threshold,
            plan_id=row.plan_id,
            quota=row.quota,
            usage=row.usage,
            period_start=row.period_start,
            period_end=row.period_end,
            crossed_at=row.crossed_at,
        )
        for row in rows
    ]
    write_events(conn, events)
    # The crossing names its event by the outbox's id for it (derived from the dedupe key).
    conn.execute(
        sa.text(
            "update dictamesh_billing_usage_threshold_crossings c set event_id = v.event_id"
            " from jsonb_to_recordset(cast(:rows as jsonb))"
            " as v(organization_id bigint, metric text, period_start timestamptz,"
            " threshold smallint, event_id uuid)"
            " where (c.organization_id, c.metric, c.period_start, c.threshold)"
            " = (v.organization_id, v.metric, v.period_start, v.threshold)"
        ),
        {
            "rows": json.dumps(
                [
                    {
                        "organization_id": row.organization_id,
                        "metric": row.metric,
                        "period_start": row.period_start.isoformat(),
                        "threshold": row.threshold,
                        "event_id": str(event_id(event.dedupe_key)),
                    }
                    for row, event in zip(rows, events, strict=True)
                ]
            )
        },
    )
    return [
        Crossing(row.external_id, row.metric, row.threshold, row.period_start, row.usage, row.quota)
        for row in rows
    ]
