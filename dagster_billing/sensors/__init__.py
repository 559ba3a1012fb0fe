"""Sensors: reactions to the outside world (Stripe, usage thresholds, the outbox)."""

from datetime import UTC, datetime

import dagster as dg

from dagster_billing.observability.runs import run_failure_sensor
from dagster_billing.resources import WarehouseResource
from dagster_billing.usage.thresholds import record_threshold_crossings


@dg.sensor(
    name="usage_thresholds",
    minimum_interval_seconds=300,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
def usage_threshold_sensor(
    context: dg.SensorEvaluationContext, warehouse: WarehouseResource
) -> dg.SkipReason:
    """Every 5 minutes: organizations at 80% / 100% of a quota in their current period get
    one `billing.usage.threshold_reached` outbox event each (free plans too). It starts no
    run; the outbox relay publishes the events."""
    with warehouse.engine().begin() as conn:
        crossings = record_threshold_crossings(conn, datetime.now(UTC))
    for crossing in crossings:
        context.log.info(
            f"{crossing.organization} reached {crossing.threshold}% of {crossing.metric}"
            f" ({crossing.usage} of {crossing.quota})"
        )
    return dg.SkipReason(f"{len(crossings)} threshold events written")


sensors: list[dg.SensorDefinition] = [usage_threshold_sensor, run_failure_sensor]
