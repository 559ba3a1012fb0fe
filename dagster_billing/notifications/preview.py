"""`billing notifications preview`: what a customer gets, from real rows.

The organization's latest event of the template's type is rendered; without one, a
sample event is built from its latest invoice or subscription, so finance can review a
template before the first real event exists.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.events.outbox import ORGANIZATION_OF_EVENT
from dagster_billing.invoicing.document import Seller
from dagster_billing.invoicing.pdf import DEFAULT_TEMPLATE_DIR
from dagster_billing.notifications.render import EventRow, NotificationError, Rendered, render
from dagster_billing.notifications.specs import TEMPLATES, TemplateSpec

_LATEST = sa.text(
    f"""
    select o.event_id::text as event_id, o.event_type, o.payload, o.occurred_at
    from dictamesh_billing_outbox o
    where o.event_type = :type and {ORGANIZATION_OF_EVENT} = :org
    order by o.id desc limit 1
    """
)


def _sample_payload(conn: Connection, spec: TemplateSpec, org: str) -> dict[str, Any]:
    if spec.event_type.startswith(("billing.invoice.", "billing.payment.")):
        invoice = conn.execute(
            sa.text(
                "select i.id, i.number, i.amount_due, i.currency, i.due_at"
                " from dictamesh_billing_invoices i join dictamesh_billing_organizations g"
                " on g.id = i.organization_id where g.external_id = :org"
                " and i.number is not null order by i.issued_at desc, i.id desc limit 1"
            ),
            {"org": org},
        ).one_or_none()
        if invoice is None:
            raise NotificationError(f"org: {org!r} has no finalized invoice to preview with")
        return {
            "invoice_id": invoice.id,
            "number": invoice.number,
            "invoice_number": invoice.number,
            "amount": str(invoice.amount_due),
            "currency": invoice.currency.strip(),
            "failure_code": "card_declined",
            "next_attempt_at": (datetime.now(UTC) + timedelta(days=3)).isoformat(),
        }
    sub = conn.execute(
        sa.text(
            "select s.external_id, s.plan_id, s.billing_cycle, s.seats, s.started_at,"
            " coalesce(s.current_period_end, s.started_at + interval '1 year') as period_end"
            " from dictamesh_billing_subscriptions s join dictamesh_billing_organizations g"
            " on g.id = s.organization_id where g.external_id = :org"
            " order by s.started_at desc limit 1"
        ),
        {"org": org},
    ).one_or_none()
    if sub is None:
        raise NotificationError(f"org: {org!r} has no subscription to preview with")
    now = datetime.now(UTC)
    quota = conn.scalar(
        sa.text(
            "select included_quantity from dictamesh_billing_plan_quotas"
            " where plan_id = :p and metric = 'api_calls'"
        ),
        {"p": sub.plan_id},
    ) or Decimal(1000)
    return {
        "subscription_id": sub.external_id,
        "organization_id": org,
        "plan_id": sub.plan_id,
        "billing_cycle": sub.billing_cycle,
        "seats": sub.seats,
        "started_at": sub.started_at.isoformat(),
        "canceled_at": now.isoformat(),
        "ends_at": sub.period_end.isoformat(),
        "renews_at": sub.period_end.isoformat(),
        "metric": "api_calls",
        "threshold": 80,
        "quota": str(quota),
        "usage": str(quota * Decimal("0.8")),
        "period_start": now.replace(day=1).isoformat(),
        "period_end": (now.replace(day=1) + timedelta(days=31)).replace(day=1).isoformat(),
    }


def preview(
    conn: Connection,
    template: str,
    org: str,
    seller: Seller,
    invoice_template_dir: Path = DEFAULT_TEMPLATE_DIR,
) -> Rendered:
    spec = TEMPLATES.get(template)
    if spec is None:
        raise NotificationError(
            f"template: unknown {template!r} (one of {', '.join(sorted(TEMPLATES))})"
        )
    if (
        conn.scalar(
            sa.text("select 1 from dictamesh_billing_organizations where external_id = :o"),
            {"o": org},
        )
        is None
    ):
        raise NotificationError(f"org: no organization {org!r}")
    row = conn.execute(_LATEST, {"type": spec.event_type, "org": org}).one_or_none()
    if row is not None:
        event = EventRow(row.event_id, row.event_type, org, row.payload, row.occurred_at)
    else:
        event = EventRow(
            "preview", spec.event_type, org, _sample_payload(conn, spec, org), datetime.now(UTC)
        )
    return render(conn, event, seller, invoice_template_dir=invoice_template_dir)
