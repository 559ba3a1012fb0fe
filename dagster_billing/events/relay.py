"""The outbox relay: unpublished rows, in order, to Kafka as CloudEvents (binary mode).

One code path for the Dagster asset (`run` until the outbox is drained) and for
`billing events relay --follow` (`run` again and again until stopped). A row is marked
published only after the broker acknowledged it (its delivery report), so a relay that
dies between the two sends the row again: at least once, duplicates share `ce_id`.

The key is the organization's external id, so one organization's events stay in one
partition, in outbox order (the producer is idempotent: its retries neither duplicate
nor reorder). One relay at a time holds a Postgres advisory lock.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any

import sqlalchemy as sa
from confluent_kafka import KafkaError, Message, Producer
from sqlalchemy.engine import Connection, Engine

from dagster_billing.events.catalog import EVENT_TYPES, SOURCE, dataschema
from dagster_billing.events.outbox import ORGANIZATION_OF_EVENT
from dagster_billing.observability.tracing import kafka_produce_span, kafka_trace_headers

log = logging.getLogger("dagster_billing.events.relay")

RELAY_LOCK = "dictamesh_billing_outbox_relay"
# Marking rows published (a non-HOT update of every row) is the slowest step; batches
# are marked on this many connections while the next batch is read and produced.
MARK_THREADS = 1
SPECVERSION = b"1.0"
CONTENT_TYPE = b"application/json"

_UNPUBLISHED = sa.text(
    f"""
    select o.id, o.event_id::text as event_id, o.event_type, o.aggregate_type, o.aggregate_id,
           o.payload::text as payload,
           to_char(o.occurred_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') as time,
           {ORGANIZATION_OF_EVENT} as organization
    from dictamesh_billing_outbox o
    where o.published_at is null and o.id > :after
    order by o.id
    limit :limit
    """
)

_MARK_PUBLISHED = sa.text(
    "update dictamesh_billing_outbox set published_at = now(), attempts = attempts + 1,"
    " last_error = null where id = any(:ids) and published_at is null"
)
_MARK_FAILED = sa.text(
    "update dictamesh_billing_outbox set attempts = attempts + 1, last_error = :error"
    " where id = any(:ids) and published_at is null"
)
_PENDING = sa.text("select count(*) from dictamesh_billing_outbox where published_at is null")


@cache
def _type_headers(event_type: str) -> tuple[tuple[str, bytes], ...]:
    """The headers every event of a type shares, encoded once."""
    headers = [
        ("ce_specversion", SPECVERSION),
        ("ce_source", SOURCE.encode()),
        ("ce_type", event_type.encode()),
        ("content-type", CONTENT_TYPE),
    ]
    if event_type in EVENT_TYPES:
        headers.append(("ce_dataschema", dataschema(event_type).encode()))
    return tuple(headers)


def cloudevent_headers(row: Any) -> list[tuple[str, bytes]]:
    """CloudEvents 1.0 Kafka binary mode: attributes as `ce_` headers, data as the value."""
    return [
        ("ce_id", row.event_id.encode()),
        ("ce_time", row.time.encode()),
        ("ce_subject", f"{row.aggregate_type}/{row.aggregate_id}".encode()),
        ("ce_partitionkey", row.organization.encode()),
        *_type_headers(row.event_type),
    ]


@dataclass
class RelayResult:
    published: int = 0
    failed: int = 0
    pending: int = 0
    outages: int = 0
    stopped: bool = False


@dataclass
class _Batch:
    delivered: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)

    def report(self, row_id: int, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self.delivered.append(row_id)
        else:
            self.failed[row_id] = error.str()


class Relay:
    """Publishes the outbox; `stop` (a threading.Event) ends it cleanly between waits."""

    def __init__(
        self,
        engine: Engine,
        producer_config: dict[str, Any],
        topic: str,
        *,
        batch_size: int = 10_000,
        max_backoff_seconds: float = 30.0,
        stop: threading.Event | None = None,
        producer_factory: Callable[[dict[str, Any]], Producer] = Producer,
    ) -> None:
        self.engine = engine
        self.topic = topic
        self.batch_size = batch_size
        self.max_backoff = max_backoff_seconds
        self.stop = stop or threading.Event()
        self._config = {**producer_config, "error_cb": self._broker_error}
        self._factory = producer_factory
        self._producer: Producer | None = None
        self._last_broker_error: str | None = None
        self._outage_since: float | None = None

    # -- outage reporting: once when it starts, once when it ends -----------------------

    def _broker_error(self, error: KafkaError) -> None:
        self._last_broker_error = error.str()

    def _outage(self, waiting: int, reason: str | None) -> bool:
        """Say once that the broker is unreachable; True when this began a new outage."""
        if self._outage_since is not None:
            return False
        self._outage_since = time.monotonic()
        log.warning(
            "Kafka unreachable (%s): %d event(s) wait in the outbox; retrying with backoff",
            reason or self._last_broker_error or "no delivery report yet",
            waiting,
        )
        return True

    def _recovered(self) -> None:
        if self._outage_since is not None:
            log.warning(
                "Kafka reachable again after %.0f s; publishing resumed",
                time.monotonic() - self._outage_since,
            )
            self._outage_since = None

    # -- the work ----------------------------------------------------------------------

    def producer(self) -> Producer:
        if self._producer is None:
            self._producer = self._factory(self._config)
        return self._producer

    def _produce(self, rows: list[Any], batch: _Batch) -> None:
        """One producer span per batch (a span per event would cost more than the produce);
        its `traceparent` rides on each message so a consumer can continue the trace."""
        with kafka_produce_span(self.topic, **{"messaging.batch.message_count": len(rows)}):
            self._produce_rows(rows, batch, kafka_trace_headers())

    def _produce_rows(self, rows: list[Any], batch: _Batch, trace: list[tuple[str, bytes]]) -> None:
        producer = self.producer()
        produce, topic = producer.produce, self.topic
        for row in rows:
            while True:
                try:
                    produce(
                        topic,
                        value=row.payload.encode(),
                        key=row.organization.encode(),
                        headers=cloudevent_headers(row) + trace,
                        on_delivery=partial(batch.report, row.id),
                    )
                    break
                except BufferError:
                    producer.poll(0.1)
            producer.poll(0)

    def _await_reports(self, count: int, batch: _Batch, result: RelayResult) -> None:
        """Wait for every delivery report; in an outage the messages stay queued in the
        producer and are delivered when the broker is back, so waiting loses nothing."""
        producer = self.producer()
        backoff = 2.0
        while (reported := len(batch.delivered) + len(batch.failed)) < count:
            producer.flush(backoff)
            progress = len(batch.delivered) + len(batch.failed) - reported
            if reported + progress >= count:
                break
            if not progress and self._outage(count - len(batch.delivered), None):
                result.outages += 1
            if self.stop.is_set():
                return
            backoff = min(backoff * 2, self.max_backoff)

    def _mark(self, conn: Connection, batch: _Batch) -> None:
        if batch.delivered:
            conn.execute(_MARK_PUBLISHED, {"ids": batch.delivered})
        if batch.failed:
            first_error = next(iter(batch.failed.values()))
            conn.execute(_MARK_FAILED, {"ids": list(batch.failed), "error": first_error[:500]})

    def run(self, max_outage_seconds: float | None = None) -> RelayResult:
        """Publish every unpublished row (in id order) once; returns what happened.

        With `max_outage_seconds`, gives up waiting for a broker after that long (rows
        stay unpublished for the next run); without, waits until stopped.
        """
        result = RelayResult()
        with self.engine.connect() as lock_conn:
            locked = lock_conn.scalar(
                sa.text("select pg_try_advisory_lock(hashtext(:k))"), {"k": RELAY_LOCK}
            )
            if not locked:
                log.warning("another relay holds the outbox lock; this one publishes nothing")
                result.pending = self.pending()
                return result
            try:
                self._run_locked(result, max_outage_seconds)
            finally:
                lock_conn.execute(
                    sa.text("select pg_advisory_unlock(hashtext(:k))"), {"k": RELAY_LOCK}
                )
                lock_conn.commit()
        result.pending = self.pending()
        result.stopped = self.stop.is_set()
        return result

    def _run_locked(self, result: RelayResult, max_outage_seconds: float | None) -> None:
        # Every mark is awaited before the run ends (and before a retry after a failure).
        with ThreadPoolExecutor(
            max_workers=MARK_THREADS, thread_name_prefix="outbox-mark"
        ) as marker:
            marks: list[Future[None]] = []
            try:
                self._batches(result, max_outage_seconds, marker, marks)
            finally:
                for mark in marks:
                    mark.result()

    def _marked(self, batch: _Batch) -> None:
        with self.engine.begin() as conn:
            self._mark(conn, batch)

    def _batches(
        self,
        result: RelayResult,
        max_outage_seconds: float | None,
        marker: ThreadPoolExecutor,
        marks: list[Future[None]],
    ) -> None:
        after = 0
        backoff = 1.0
        while not self.stop.is_set():
            with self.engine.connect() as conn:
                rows = conn.execute(_UNPUBLISHED, {"after": after, "limit": self.batch_size}).all()
            if not rows:
                return
            batch = _Batch()
            self._produce(rows, batch)
            started = time.monotonic()
            while True:
                self._await_reports(len(rows), batch, result)
                done = len(batch.delivered) + len(batch.failed) >= len(rows)
                waited = time.monotonic() - started
                if done or self.stop.is_set():
                    break
                if max_outage_seconds is not None and waited >= max_outage_seconds:
                    break
            marks.append(marker.submit(self._marked, batch))
            result.published += len(batch.delivered)
            result.failed += len(batch.failed)
            if batch.failed or len(batch.delivered) < len(rows):
                # The rows not acknowledged go again, first, on the next pass (after the
                # marks land); a fresh producer (an idempotent one may be fenced).
                for mark in marks:
                    mark.result()
                reason = next(iter(batch.failed.values()), None)
                if self._outage(len(rows) - len(batch.delivered), reason):
                    result.outages += 1
                self._discard_producer()
                if max_outage_seconds is not None or self.stop.is_set():
                    return
                self.stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                after = 0
                continue
            self._recovered()
            backoff = 1.0
            after = rows[-1].id

    def _discard_producer(self) -> None:
        """Drop the producer without waiting: its unacknowledged messages are re-read
        from the outbox, so purging them costs at most a duplicate, never a loss."""
        if self._producer is not None:
            self._producer.purge()
            self._producer.flush(0)
            self._producer = None

    def pending(self) -> int:
        with self.engine.connect() as conn:
            return int(conn.scalar(_PENDING) or 0)

    def follow(self, idle_seconds: float = 1.0) -> RelayResult:
        """Relay until `stop` is set, polling the outbox every `idle_seconds` when idle."""
        total = RelayResult()
        while not self.stop.is_set():
            result = self.run()
            total.published += result.published
            total.failed += result.failed
            total.outages += result.outages
            self.stop.wait(idle_seconds)
        self.close()
        total.pending = self.pending()
        total.stopped = True
        return total

    def close(self) -> None:
        self._discard_producer()


def delete_published(conn: Connection, older_than_days: int) -> int:
    """Retention: rows published more than `older_than_days` ago go, once notifications
    and webhooks have taken them too; anything not yet consumed stays."""
    return conn.execute(
        sa.text(
            "delete from dictamesh_billing_outbox where published_at is not null"
            " and published_at < now() - make_interval(days => :days)"
            " and notified_at is not null and webhooks_at is not null"
        ),
        {"days": older_than_days},
    ).rowcount
