"""Kafka as a Dagster resource: where billing events go, and how the producer is set up."""

from __future__ import annotations

from typing import Any

import dagster as dg

# Exactly-once per partition on the producer side (no duplicates from its own retries,
# no reordering), and a write counts only when every in-sync replica has it.
PRODUCER_DEFAULTS: dict[str, Any] = {
    "enable.idempotence": True,
    "acks": "all",
    "linger.ms": 5,
    "batch.num.messages": 10_000,
    "queue.buffering.max.messages": 500_000,
    # librdkafka would print every failed connection; the relay reports an outage once.
    "log_level": 0,
}


class KafkaResource(dg.ConfigurableResource):
    """`bootstrap_servers` empty means no broker: events stay in the outbox until one is set."""

    bootstrap_servers: str | None = None
    topic: str = "dictamesh.billing.events"
    # A message the broker has not acknowledged by then is reported failed and re-sent
    # from the outbox on the next pass (librdkafka's default is 5 minutes).
    message_timeout_ms: int = 120_000
    # Published outbox rows older than this are deleted by the warehouse maintenance job.
    outbox_retention_days: int = 7

    @property
    def configured(self) -> bool:
        return bool(self.bootstrap_servers)

    def producer_config(self) -> dict[str, Any]:
        if not self.bootstrap_servers:
            raise ValueError(
                "KAFKA_BOOTSTRAP_SERVERS: not set, so there is no broker to publish to"
            )
        return {
            **PRODUCER_DEFAULTS,
            "bootstrap.servers": self.bootstrap_servers,
            "message.timeout.ms": self.message_timeout_ms,
        }

    @classmethod
    def from_settings(cls, settings: Any) -> KafkaResource:
        return cls(
            bootstrap_servers=settings.kafka_bootstrap_servers,
            topic=settings.kafka_events_topic,
            outbox_retention_days=settings.events_retention_days,
        )
