"""`stripe_reconciliation`: the webhook inbox, in-flight attempts, dunning retries.

Each tick (every minute) processes received webhooks, resolves attempts whose outcome is
not known yet (with backoff), completes refunds left pending, and, when dunning retries
fell due since the cursor, requests one `payments_job` run for them. The cursor is the
instant up to which retries were requested, so a retry is requested once and no run key
repeats.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import sqlalchemy as sa

from dagster_billing.partitions import daily_partitions
from dagster_billing.payments.reconcile import reconcile_due
from dagster_billing.payments.refunds import resume_pending_refunds
from dagster_billing.payments.webhooks import process_inbox
from dagster_billing.resources import InvoicingResource, WarehouseResource
from dagster_billing.resources.stripe import StripeResource

payments_job = dg.define_asset_job(
    "payments_job", selection=dg.AssetSelection.assets("payments"), partitions_def=daily_partitions
)

_RETRIES_DUE = sa.text(
    """
    select count(*) from dictamesh_billing_payments p
    join dictamesh_billing_invoices i on i.id = p.invoice_id
    where p.status = 'failed' and i.status = 'open'
      and p.next_retry_at > :since and p.next_retry_at <= :now
    """
)


@dg.sensor(
    name="stripe_reconciliation",
    job=payments_job,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
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
    since = datetime.fromisoformat(cursor["retries_through"]) if cursor else now - timedelta(days=1)
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
        retries = int(conn.scalar(_RETRIES_DUE, {"since": since, "now": now}) or 0)
    context.log.info(
        f"webhooks: {inbox.processed} processed, {inbox.ignored} ignored, {inbox.failed} failed,"
        f" {inbox.deferred} deferred; attempts: {reconciled.resolved} of {reconciled.checked}"
        f" resolved; {refunds} pending refunds completed; {retries} retries due"
    )
    run_requests = []
    if retries and stripe.charging:
        yesterday = (now - timedelta(days=1)).strftime("%Y-%m-%d")
        run_requests.append(
            dg.RunRequest(run_key=f"payment-retries:{now.isoformat()}", partition_key=yesterday)
        )
    return dg.SensorResult(
        run_requests=run_requests,
        cursor=json.dumps({"retries_through": now.isoformat()}),
        skip_reason=None if run_requests else "no dunning retries fell due",
    )


payments_sensors = [stripe_reconciliation_sensor]
