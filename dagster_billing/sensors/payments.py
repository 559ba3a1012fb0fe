"""`stripe_reconciliation`: the webhook inbox, in-flight attempts, charges that are due.

Each tick (every minute) processes received webhooks, resolves attempts whose outcome is
not known yet (with backoff), completes refunds left pending, and, when invoices are due
for a charge (first attempts after finalization, dunning retries), requests one
`payments_job` run. The run key is a digest of the due invoices with their next attempt
numbers, kept in the cursor: the same due set is requested once, and a new attempt of the
same invoice gets a new key, so no run key repeats.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from dagster_billing.partitions import daily_partitions
from dagster_billing.payments.charging import invoices_to_charge
from dagster_billing.payments.reconcile import reconcile_due
from dagster_billing.payments.refunds import resume_pending_refunds
from dagster_billing.payments.webhooks import process_inbox
from dagster_billing.resources import InvoicingResource, WarehouseResource
from dagster_billing.resources.stripe import StripeResource

payments_job = dg.define_asset_job(
    "payments_job", selection=dg.AssetSelection.assets("payments"), partitions_def=daily_partitions
)

_NEXT_ATTEMPTS = sa.text(
    """
    select i.id, coalesce(max(p.attempt), 0) + 1 as next_attempt
    from unnest(cast(:ids as bigint[])) as i(id)
    left join dictamesh_billing_payments p on p.invoice_id = i.id
    group by i.id order by i.id
    """
)


def due_digest(conn: sa.Connection, now: datetime) -> tuple[int, str]:
    """How many invoices are due for a charge, and a digest of (invoice, next attempt)."""
    due = invoices_to_charge(conn, now)
    pairs = conn.execute(_NEXT_ATTEMPTS, {"ids": due}).all() if due else []
    material = ",".join(f"{row.id}:{row.next_attempt}" for row in pairs)
    return len(due), hashlib.sha256(material.encode()).hexdigest()[:16]


@dg.sensor(
    name="stripe_reconciliation",
    job=payments_job,
    minimum_interval_seconds=60,
)
def stripe_reconciliation_sensor(
    context: dg.SensorEvaluationContext,
    warehouse: WarehouseResource,
    stripe: StripeResource,
    invoicing: InvoicingResource,
) -> dg.SensorResult | dg.SkipReason:
    """Converge payments to Stripe: webhooks, unknown outcomes, pending refunds, retries
    that fell due."""
    if not stripe.enabled or not stripe.api_key:
        return dg.SkipReason("STRIPE_ENABLED is false (or STRIPE_API_KEY unset)")
    now = datetime.now(UTC)
    cursor = json.loads(context.cursor) if context.cursor else {}
    engine, gateway = warehouse.engine(), stripe.gateway()
    inbox = process_inbox(engine, gateway, now=now, retry_days=stripe.retry_days)
    reconciled = reconcile_due(engine, gateway, now=now, retry_days=stripe.retry_days)
    refunds = resume_pending_refunds(
        engine,
        gateway,
        now=now,
        seller=invoicing.seller,
        data_dir=Path(invoicing.data_dir),
    )
    with engine.connect() as conn:
        due, digest = due_digest(conn, now)
    context.log.info(
        f"webhooks: {inbox.processed} processed, {inbox.ignored} ignored, {inbox.failed} failed,"
        f" {inbox.deferred} deferred; attempts: {reconciled.resolved} of {reconciled.checked}"
        f" resolved; {refunds} pending refunds completed; {due} invoices due"
    )
    run_requests = []
    if due and stripe.charging and digest != cursor.get("requested"):
        yesterday = (now - timedelta(days=1)).strftime("%Y-%m-%d")
        run_requests.append(dg.RunRequest(run_key=f"payments:{digest}", partition_key=yesterday))
    requested = digest if run_requests else cursor.get("requested")
    return dg.SensorResult(
        run_requests=run_requests,
        cursor=json.dumps({"requested": requested, "checked_at": now.isoformat()}),
        skip_reason=None if run_requests else "no new invoices due for a charge",
    )


payments_sensors = [stripe_reconciliation_sensor]
