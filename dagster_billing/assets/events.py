"""Events: the outbox published to Kafka and turned into notifications (assets + sensor),
renewal reminders (daily schedule), and published rows retired.

The asset and `billing events relay` run the same `Relay`; the asset drains the outbox
once and ends, so a broker outage fails nothing: rows wait for the next run.
"""

from datetime import UTC, datetime, timedelta

import dagster as dg
import sqlalchemy as sa

from dagster_billing.events.relay import Relay, delete_published, unpublished_count
from dagster_billing.events.renewals import write_renewal_reminders
from dagster_billing.events.webhooks import WebhookDispatcher
from dagster_billing.resources import InvoicingResource, WarehouseResource
from dagster_billing.resources.kafka import KafkaResource
from dagster_billing.resources.notifications import NotificationsResource
from dagster_billing.resources.smtp import SmtpResource

# Upstream writers of outbox rows, so the lineage shows where events come from. Payments
# (built in parallel) adds its asset key here when it lands.
EVENT_SOURCES = [dg.AssetKey(k) for k in ("invoices_finalized", "invoices_overdue", "payments")]

# A run gives up waiting for an unreachable broker after this long; the sensor retries.
MAX_OUTAGE_SECONDS = 60.0


@dg.asset(group_name="events", deps=EVENT_SOURCES, kinds={"kafka"})
def billing_events_published(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, kafka: KafkaResource
) -> dg.MaterializeResult:
    """Every unpublished outbox row produced to Kafka as a CloudEvent, in order."""
    if not kafka.configured:
        pending = _pending(warehouse)
        context.log.info(f"KAFKA_BOOTSTRAP_SERVERS not set: {pending} events stay in the outbox")
        return dg.MaterializeResult(metadata={"published": 0, "pending": pending})
    relay = Relay(warehouse.engine(), kafka.producer_config(), kafka.topic)
    try:
        result = relay.run(max_outage_seconds=MAX_OUTAGE_SECONDS)
    finally:
        relay.close()
    return dg.MaterializeResult(
        metadata={
            "published": result.published,
            "failed": result.failed,
            "pending": result.pending,
            "topic": kafka.topic,
        }
    )


def _pending(warehouse: WarehouseResource) -> int:
    with warehouse.engine().connect() as conn:
        return unpublished_count(conn)


@dg.asset(group_name="warehouse", kinds={"postgres"})
def outbox_retention(warehouse: WarehouseResource, kafka: KafkaResource) -> dg.MaterializeResult:
    """Delete published outbox rows older than EVENTS_RETENTION_DAYS (unpublished stay)."""
    with warehouse.engine().begin() as conn:
        deleted = delete_published(conn, kafka.outbox_retention_days)
    return dg.MaterializeResult(
        metadata={"deleted": deleted, "retention_days": kafka.outbox_retention_days}
    )


@dg.asset(group_name="events", deps=EVENT_SOURCES, kinds={"email"})
def billing_notifications_sent(
    warehouse: WarehouseResource,
    notifications: NotificationsResource,
    smtp: SmtpResource,
    invoicing: InvoicingResource,
) -> dg.MaterializeResult:
    """New events become deliveries (one per event, channel and recipient), then are sent."""
    result = notifications.notifier(warehouse.engine(), smtp, invoicing).run()
    return dg.MaterializeResult(
        metadata={"planned": result.planned, "sent": result.sent, "failed": result.failed}
    )


@dg.asset(group_name="events", deps=EVENT_SOURCES, kinds={"webhook"})
def billing_webhooks_delivered(
    warehouse: WarehouseResource, notifications: NotificationsResource
) -> dg.MaterializeResult:
    """New events queued for each customer endpoint; every delivery that is due, sent."""
    dispatcher = WebhookDispatcher(
        warehouse.engine(), disable_after=timedelta(days=notifications.webhook_disable_after_days)
    )
    result = dispatcher.run(datetime.now(UTC))
    return dg.MaterializeResult(metadata=dict(vars(result)))


class RenewalReminderConfig(dg.Config):
    as_of: str | None = None  # ISO instant; defaults to now (tests and backfills pin it)


@dg.asset(group_name="events", kinds={"postgres"})
def billing_renewal_reminders(
    config: RenewalReminderConfig,
    warehouse: WarehouseResource,
    notifications: NotificationsResource,
) -> dg.MaterializeResult:
    """`billing.subscription.renewal_upcoming` for annual renewals within the reminder
    window (NOTIFICATION_RENEWAL_DAYS), once per renewal."""
    now = datetime.fromisoformat(config.as_of) if config.as_of else datetime.now(UTC)
    with warehouse.engine().begin() as conn:
        written = write_renewal_reminders(conn, now, notifications.renewal_days)
    return dg.MaterializeResult(metadata={"reminders": written})


billing_events_job = dg.define_asset_job(
    "billing_events",
    selection=dg.AssetSelection.assets(
        "billing_events_published", "billing_notifications_sent", "billing_webhooks_delivered"
    ),
)
billing_upcoming_renewal_job = dg.define_asset_job(
    "billing_upcoming_renewal",
    selection=dg.AssetSelection.assets("billing_renewal_reminders", "billing_notifications_sent"),
)
# Daily at 08:00 UTC, a civil hour for most customers' inboxes.
billing_upcoming_renewal_schedule = dg.ScheduleDefinition(
    name="billing_upcoming_renewal",
    job=billing_upcoming_renewal_job,
    cron_schedule="0 8 * * *",
    execution_timezone="UTC",
)


@dg.sensor(
    job=billing_events_job,
    minimum_interval_seconds=30,
)
def billing_events_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SensorResult | dg.SkipReason:
    """A relay and notification run whenever the outbox has rows newer than the last run
    saw; the cursor is the highest outbox id, so one new batch of events asks for one run
    (rows an earlier run left waiting go with the next one)."""
    with warehouse.engine().connect() as conn:
        newest = conn.scalar(sa.text("select coalesce(max(id), 0) from dictamesh_billing_outbox"))
        pending = unpublished_count(conn)
        retries = conn.scalar(
            sa.text(
                "select count(*) from dictamesh_billing_webhook_deliveries"
                " where status = 'pending' and next_attempt_at <= now()"
            )
        )
    seen = int(context.cursor or 0)
    if newest <= seen and not retries:
        return dg.SkipReason(f"no new events (outbox id {newest}, {pending} unpublished)")
    run_key = f"outbox-{newest}" if newest > seen else None  # retries: a run each time
    return dg.SensorResult(run_requests=[dg.RunRequest(run_key=run_key)], cursor=str(newest))


events_assets = [
    billing_events_published,
    billing_notifications_sent,
    billing_webhooks_delivered,
    billing_renewal_reminders,
    outbox_retention,
]
events_jobs = [billing_events_job, billing_upcoming_renewal_job]
events_sensors = [billing_events_sensor]
events_schedules = [billing_upcoming_renewal_schedule]
