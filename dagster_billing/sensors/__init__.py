"""Sensors: reactions to the outside world (Stripe, usage thresholds, the outbox)."""

import dagster as dg

sensors: list[dg.SensorDefinition] = []
