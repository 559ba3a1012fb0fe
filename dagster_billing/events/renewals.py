"""Renewal reminders: annual subscriptions renewing within the next N days get one
`billing.subscription.renewal_upcoming` event per renewal (its date is in the dedupe key,
so the daily run can look at a whole window and still write each reminder once). The
renewal is the end of the term year holding now, from the warehouse's billing calendar
(`dictamesh_billing_period`), the date dbt bills the next year's fee on."""

from __future__ import annotations

from datetime import datetime, timedelta

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.events.catalog import subscription_renewal_upcoming
from dagster_billing.events.outbox import write_events

_ANNUAL = sa.text(
    """
    select s.external_id, g.external_id as organization, s.plan_id, g.currency, s.cancel_at,
           p.fee_period_end as renews_at
    from dictamesh_billing_subscriptions s
    join dictamesh_billing_organizations g on g.id = s.organization_id
    cross join lateral dictamesh_billing_period(s.billing_anchor, s.billing_cycle,
        dictamesh_billing_period_index(s.billing_anchor, :now)) p
    where s.billing_cycle = 'annual' and s.status in ('active', 'past_due')
      and s.started_at <= :now
    """
)


def write_renewal_reminders(conn: Connection, now: datetime, days_ahead: int) -> int:
    """Write reminders for renewals in (now, now + days_ahead]; returns how many were new."""
    horizon = now + timedelta(days=days_ahead)
    events = []
    for row in conn.execute(_ANNUAL, {"now": now}):
        renewal = row.renews_at
        if renewal > horizon or (row.cancel_at is not None and row.cancel_at <= renewal):
            continue
        events.append(
            subscription_renewal_upcoming(
                subscription_id=row.external_id,
                organization_id=row.organization,
                plan_id=row.plan_id,
                renews_at=renewal,
                amount=None,
                currency=row.currency.strip(),
                as_of=now,
            )
        )
    return write_events(conn, events)
