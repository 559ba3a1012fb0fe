"""The outbox relay: unpublished rows, in order, to Kafka as CloudEvents (binary mode).

One code path for the Dagster asset (`run` until the outbox is drained) and for
`billing events relay --follow` (`run` again and again until stopped). A row is marked
published only after the broker acknowledged it (its delivery report), so a relay that
dies between the two sends the row again: at least once, duplicates share `ce_id`.

The key is the organization's external id, so one organization's events stay in one
partition, in outbox order (the producer is idempotent: its retries neither duplicate
nor reorder). One relay at a time holds a Postgres advisory lock.

Progress lives beside the outbox, never in its rows (migration 0012): a trigger queues
each inserted id in `dictamesh_billing_outbox_unpublished`, and marking moves delivered
ids from there to the insert-only `dictamesh_billing_outbox_published` (id,
published_at). Updating `published_at` on the wide jsonb rows could not be HOT (the
column was in the predicate of the index that found unpublished rows) and cost ~18 us a
row, most of the relay's time; the move costs ~2.6 us. The queue holds exactly the
committed, unpublished ids, so a row whose transaction commits after a larger id was
published is still found: no high-water mark to skip it. (Rejected: a HOT update needs
fillfactor ~50 on the outbox and still a way to find unpublished rows; an anti-join
against the log needs a gap-safe scan start, i.e. transaction-id bookkeeping.)

Throughput (docs/performance.md): the topic is looked up while the first batch is read;
the next batch is read while the current one is produced; two batches are in flight
(the broker keeps receiving while the older one's reports come in); rows arrive as the
bytes they are sent as; delivery reports are served in bulk.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from functools import cache, partial
from typing import Any

import sqlalchemy as sa
from confluent_kafka import KafkaError, KafkaException, Message, Producer
from sqlalchemy.engine import Connection, Engine

from dagster_billing.events.catalog import EVENT_TYPES, SOURCE, dataschema
from dagster_billing.events.outbox import ORGANIZATION_OF_EVENT
from dagster_billing.observability.tracing import kafka_produce_span, kafka_trace_headers

log = logging.getLogger("dagster_billing.events.relay")

RELAY_LOCK = "dictamesh_billing_outbox_relay"
# Batches are marked on this many connections while the next ones are read and produced.
MARK_THREADS = 1
# How long a new producer waits for the topic's metadata before producing anyway.
TOPIC_LOOKUP_SECONDS = 2.0
# Batches produced and awaiting their delivery reports at once (see `_batches`).
IN_FLIGHT = 2
# Delivery reports are served every this many messages (one poll serves all that
# arrived). A poll also releases the GIL, every ~0.1 ms: otherwise the read-ahead thread
# waits up to the 5 ms switch interval for each network chunk of its result (its reads
# took 4x longer; polling every 100 messages, 20% longer than every 20).
POLL_EVERY = 20
SPECVERSION = b"1.0"
CONTENT_TYPE = b"application/json"

# Everything the message needs, as the bytes it is sent as (a binary cursor returns
# bytea as is: no decoding to str and encoding back per field, half the relay's Python).
_UNPUBLISHED = f"""
    select o.id, o.event_type,
           convert_to(o.payload::text, 'UTF8') as payload,
           convert_to({ORGANIZATION_OF_EVENT}, 'UTF8') as organization,
           convert_to(o.event_id::text, 'UTF8') as event_id,
           convert_to(to_char(o.occurred_at at time zone 'UTC',
               'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'), 'UTF8') as time,
           convert_to(o.aggregate_type || '/' || o.aggregate_id, 'UTF8') as subject
    from dictamesh_billing_outbox_unpublished u
    join dictamesh_billing_outbox o on o.id = u.id
    where u.id > %s
    order by u.id
    limit %s
"""

# id, event type, then value, key, ce_id, ce_time and ce_subject as bytes.
OutboxRow = tuple[int, str, bytes, bytes, bytes, bytes, bytes]

# Published = moved from the unpublished queue to the published log, in one statement;
# the delete's RETURNING makes marking the same id twice a no-op.
_MARK_PUBLISHED = sa.text(
    "with moved as (delete from dictamesh_billing_outbox_unpublished where id = any(:ids)"
    " returning id) insert into dictamesh_billing_outbox_published (id) select id from moved"
)
_MARK_FAILED = sa.text(
    "update dictamesh_billing_outbox set attempts = attempts + 1, last_error = :error"
    " where id = any(:ids)"
)
_PENDING = sa.text("select count(*) from dictamesh_billing_outbox_unpublished")


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


def read_unpublished(conn: Connection, after: int, limit: int) -> list[OutboxRow]:
    """Up to `limit` unpublished rows with ids above `after`, in id order."""
    with conn.connection.driver_connection.cursor(binary=True) as cursor:
        cursor.execute(_UNPUBLISHED, (after, limit))
        return cursor.fetchall()


def cloudevent_headers(row: OutboxRow) -> list[tuple[str, bytes]]:
    """CloudEvents 1.0 Kafka binary mode: attributes as `ce_` headers, data as the value."""
    _id, event_type, _value, key, ce_id, ce_time, subject = row
    return [
        ("ce_id", ce_id),
        ("ce_time", ce_time),
        ("ce_subject", subject),
        ("ce_partitionkey", key),
        *_type_headers(event_type),
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
    size: int
    delivered: list[int] = field(default_factory=list)
    failed: dict[int, str] = field(default_factory=dict)

    def report(self, row_id: int, error: KafkaError | None, _message: Message) -> None:
        if error is None:
            self.delivered.append(row_id)
        else:
            self.failed[row_id] = error.str()

    @property
    def reported(self) -> int:
        return len(self.delivered) + len(self.failed)


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
            self._look_up_topic(self._producer)
        return self._producer

    def _look_up_topic(self, producer: Producer) -> None:
        """Fetch the topic's metadata before the first produce: otherwise librdkafka holds
        the first messages until it has looked the topic up (~0.5 s against Tansu), and
        the relay waits for them with its second batch already queued. An unreachable
        broker is not an error here: the produce path waits for it and says so."""
        with contextlib.suppress(KafkaException):
            producer.list_topics(self.topic, timeout=TOPIC_LOOKUP_SECONDS)

    def _produce(self, rows: list[OutboxRow]) -> _Batch:
        """One producer span per batch (a span per event would cost more than the produce);
        its `traceparent` rides on each message so a consumer can continue the trace."""
        batch = _Batch(len(rows))
        with kafka_produce_span(self.topic, **{"messaging.batch.message_count": len(rows)}):
            self._produce_rows(rows, batch, kafka_trace_headers())
        return batch

    def _produce_rows(
        self, rows: list[OutboxRow], batch: _Batch, trace: list[tuple[str, bytes]]
    ) -> None:
        producer = self.producer()
        produce, poll, report, topic = producer.produce, producer.poll, batch.report, self.topic
        for n, row in enumerate(rows):
            while True:
                try:
                    produce(
                        topic,
                        value=row[2],
                        key=row[3],
                        headers=cloudevent_headers(row) + trace,
                        on_delivery=partial(report, row[0]),
                    )
                    break
                except BufferError:
                    poll(0.1)
            if not n % POLL_EVERY:
                poll(0)  # serve delivery reports; one call takes all that arrived

    def _await_reports(self, batch: _Batch, result: RelayResult) -> None:
        """Wait for every delivery report of `batch` (polling, not flushing: the batch
        behind it keeps going); in an outage the messages stay queued in the producer and
        are delivered when the broker is back, so waiting loses nothing."""
        poll = self.producer().poll
        wait = 2.0
        while batch.reported < batch.size:
            before = batch.reported
            until = time.monotonic() + wait
            while batch.reported < batch.size and time.monotonic() < until:
                poll(0.05)
            if batch.reported >= batch.size:
                break
            if batch.reported == before and self._outage(batch.size - len(batch.delivered), None):
                result.outages += 1
            if self.stop.is_set():
                return
            wait = min(wait * 2, self.max_backoff)

    def _mark(self, conn: Connection, batch: _Batch) -> None:
        if batch.delivered:
            mark_published(conn, batch.delivered)
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

    def _read(self, after: int) -> list[OutboxRow]:
        with self.engine.connect() as conn:
            return read_unpublished(conn, after, self.batch_size)

    def _batches(
        self,
        result: RelayResult,
        max_outage_seconds: float | None,
        marker: ThreadPoolExecutor,
        marks: list[Future[None]],
    ) -> None:
        """Keep the broker busy: while batch n's delivery reports come in, batch n+1 is
        already produced behind it (in id order, so per-partition order holds) and batch
        n+2 is being read; batch n is marked in the marker thread once all its reports
        are in."""
        backoff = 1.0
        in_flight: deque[_Batch] = deque()
        with ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-read") as reader:
            ahead = reader.submit(self._read, 0)
            self.producer()  # connects and looks the topic up while the first batch is read
            while True:
                # Once stopped, nothing new is produced; what is in flight is still
                # awaited and marked, so a clean stop sends nothing twice.
                rows = [] if self.stop.is_set() else ahead.result()
                if rows:
                    ahead = reader.submit(self._read, rows[-1][0])
                    in_flight.append(self._produce(rows))
                    if len(in_flight) < IN_FLIGHT:
                        continue
                if not in_flight:
                    return
                batch = in_flight.popleft()
                started = time.monotonic()
                while True:
                    self._await_reports(batch, result)
                    waited = time.monotonic() - started
                    if batch.reported >= batch.size or self.stop.is_set():
                        break
                    if max_outage_seconds is not None and waited >= max_outage_seconds:
                        break
                marks.append(marker.submit(self._marked, batch))
                result.published += len(batch.delivered)
                result.failed += len(batch.failed)
                if not batch.failed and len(batch.delivered) == batch.size:
                    self._recovered()
                    backoff = 1.0
                    continue
                # The rows not acknowledged go again, first, on the next pass (after the
                # marks land); a fresh producer (an idempotent one may be fenced). The
                # batches behind are purged with the old producer: what of them was
                # acknowledged is marked, the rest is sent again (purging is no failure).
                for mark in marks:
                    mark.result()
                reason = next(iter(batch.failed.values()), None)
                if self._outage(batch.size - len(batch.delivered), reason):
                    result.outages += 1
                self._discard_producer()
                for later in in_flight:
                    later.failed.clear()
                    marks.append(marker.submit(self._marked, later))
                    result.published += len(later.delivered)
                in_flight.clear()
                if max_outage_seconds is not None or self.stop.is_set():
                    return
                self.stop.wait(backoff)
                backoff = min(backoff * 2, self.max_backoff)
                ahead.result()
                ahead = reader.submit(self._read, 0)

    def _discard_producer(self) -> None:
        """Drop the producer without waiting: its unacknowledged messages are re-read
        from the outbox, so purging them costs at most a duplicate, never a loss."""
        if self._producer is not None:
            self._producer.purge()
            self._producer.flush(0)
            self._producer = None

    def pending(self) -> int:
        with self.engine.connect() as conn:
            return unpublished_count(conn)

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


def mark_published(conn: Connection, ids: list[int]) -> None:
    """Record rows as published (only after the broker acknowledged them)."""
    conn.execute(_MARK_PUBLISHED, {"ids": ids})


def unpublished_count(conn: Connection) -> int:
    """Outbox rows the relay has not published yet."""
    return int(conn.scalar(_PENDING) or 0)


def delete_published(conn: Connection, older_than_days: int) -> int:
    """Retention: rows published more than `older_than_days` ago go, once notifications
    and webhooks have taken them too; anything not yet consumed stays. (A trigger
    deletes their publication with them.)"""
    return conn.execute(
        sa.text(
            "delete from dictamesh_billing_outbox o using dictamesh_billing_outbox_published p"
            " where p.id = o.id and p.published_at < now() - make_interval(days => :days)"
            " and o.notified_at is not null and o.webhooks_at is not null"
        ),
        {"days": older_than_days},
    ).rowcount
