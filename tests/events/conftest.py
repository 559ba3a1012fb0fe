"""Helpers for the event tests: a fresh topic per test, a reading consumer, the broker's pid."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import psutil
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from tests.invoicing.conftest import billing  # noqa: F401  (the invoicing rows helper)
from tests.notifications.conftest import http_server  # noqa: F401  (a scripted receiver)

PARTITIONS = 3


@dataclass(frozen=True)
class Received:
    key: str
    headers: dict[str, str]
    value: bytes
    partition: int
    offset: int


def create_topic(bootstrap: str) -> str:
    name = f"billing-test-{uuid.uuid4().hex[:10]}"
    admin = AdminClient({"bootstrap.servers": bootstrap})
    admin.create_topics([NewTopic(name, num_partitions=PARTITIONS)])[name].result(timeout=30)
    return name


@pytest.fixture
def topic(kafka_broker: str) -> str:
    return create_topic(kafka_broker)


def consume(bootstrap: str, topic: str, expected: int, timeout: float = 30.0) -> list[Received]:
    """Everything on `topic` from the start (assign, no group join), until `expected`
    messages arrived and a second passed without more; in partition then offset order."""
    consumer = Consumer(
        {"bootstrap.servers": bootstrap, "group.id": "billing-tests", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, p, OFFSET_BEGINNING) for p in range(PARTITIONS)])
    received: list[Received] = []
    deadline = time.monotonic() + timeout
    quiet_until = None
    try:
        while time.monotonic() < deadline:
            message = consumer.poll(0.2)
            if message is None:
                if len(received) >= expected:
                    quiet_until = quiet_until or time.monotonic() + 1.0
                    if time.monotonic() > quiet_until:
                        break
                continue
            if message.error():
                continue
            quiet_until = None
            received.append(
                Received(
                    message.key().decode(),
                    {k: v.decode() for k, v in message.headers() or []},
                    message.value(),
                    message.partition(),
                    message.offset(),
                )
            )
    finally:
        consumer.close()
    return received


def broker_process(bootstrap: str) -> psutil.Process:
    """The broker listening on `bootstrap`'s port (the session fixture's child)."""
    port = int(bootstrap.rsplit(":", 1)[1])
    for conn in psutil.net_connections("tcp"):
        if conn.status == psutil.CONN_LISTEN and conn.laddr.port == port and conn.pid:
            return psutil.Process(conn.pid)
    raise AssertionError(f"no process listens on {bootstrap}")


@contextmanager
def paused(process: psutil.Process) -> Iterator[None]:
    """SIGSTOP .. SIGCONT: the broker keeps its sockets and memory but answers nothing."""
    process.suspend()
    try:
        yield
    finally:
        process.resume()
