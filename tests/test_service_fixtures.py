"""The real-service fixtures answer through the real clients the platform uses, so a
broken install or a changed server fails here first, not deep inside a billing test."""

from __future__ import annotations

import smtplib
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from email.message import EmailMessage
from pathlib import Path

import pytest
import stripe
from confluent_kafka import (
    OFFSET_BEGINNING,
    Consumer,
    KafkaException,
    Message,
    Producer,
    TopicPartition,
)
from confluent_kafka.admin import AdminClient, NewTopic
from prometheus_client import CollectorRegistry, Counter, start_http_server

from tests.conftest import (
    PROMETHEUS_SCRAPE_JOB,
    PrometheusServer,
    SmtpServer,
    openmetrics_counter,
    start_prometheus,
)

HOUR_START = datetime(2025, 3, 1, 10, tzinfo=UTC)
TEN_MINUTES = timedelta(minutes=10)


def _samples(result: list[dict], labels: dict[str, str]) -> list[tuple[datetime, Decimal]]:
    (series,) = [r for r in result if all(r["metric"].get(k) == v for k, v in labels.items())]
    return [(datetime.fromtimestamp(ts, UTC), Decimal(value)) for ts, value in series["values"]]


def test_prometheus_serves_backfilled_counter_samples_exactly(tmp_path: Path) -> None:
    acme = [0, 5, 12, 12, 30, 31, 40, 52]  # 10:00, 10:10, ... 11:10
    history = openmetrics_counter(
        "dictamesh_api_requests_total",
        [
            *(({"org": "acme"}, v, HOUR_START + i * TEN_MINUTES) for i, v in enumerate(acme)),
            *(({"org": "globex"}, 7 * i, HOUR_START + i * TEN_MINUTES) for i in range(8)),
        ],
    )
    with start_prometheus(tmp_path, openmetrics_text=history) as server:
        result = server.query(
            "dictamesh_api_requests_total[1h]", at=HOUR_START + timedelta(minutes=65)
        )
        # 10:05 to 11:05: the stored samples 10:10 ... 11:00 of each series, as written.
        assert _samples(result, {"org": "acme"}) == [
            (HOUR_START + i * TEN_MINUTES, Decimal(acme[i])) for i in range(1, 7)
        ]
        assert [v for _, v in _samples(result, {"org": "globex"})] == [
            Decimal(7 * i) for i in range(1, 7)
        ]

        # Prometheus 2.x range selectors are closed at both ends: the sample exactly one
        # hour back is included (Prometheus 3 excludes it). Baseline logic depends on this.
        at_hour_end = server.query(
            'dictamesh_api_requests_total{org="acme"}[1h]', at=HOUR_START + timedelta(hours=1)
        )
        assert [v for _, v in _samples(at_hour_end, {})] == [Decimal(v) for v in acme[:7]]


def test_prometheus_scrapes_a_live_metrics_endpoint(tmp_path: Path) -> None:
    registry = CollectorRegistry()
    requests = Counter("dictamesh_smoke", "Smoke-test counter.", ["org"], registry=registry)
    requests.labels("acme").inc(3)
    http_server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    try:
        target = f"127.0.0.1:{http_server.server_port}"
        with start_prometheus(tmp_path, scrape_targets=[target]) as server:
            result = server.wait_for(f'dictamesh_smoke_total{{job="{PROMETHEUS_SCRAPE_JOB}"}}')
            assert [(r["metric"]["org"], r["value"][1]) for r in result] == [("acme", "3")]
    finally:
        http_server.shutdown()
        thread.join(timeout=5)


def test_prometheus_fixture_answers_queries(prometheus: PrometheusServer) -> None:
    (result,) = prometheus.query("vector(42)", at=HOUR_START)
    assert result["value"] == [HOUR_START.timestamp(), "42"]


def _poll_one(consumer: Consumer, timeout: float = 10.0) -> Message:
    message = consumer.poll(timeout)
    assert message is not None, f"no message within {timeout} s"
    if message.error():
        raise KafkaException(message.error())
    return message


def test_kafka_broker_round_trips_a_message(kafka_broker: str) -> None:
    topic = f"smoke-{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": kafka_broker})
    admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])[topic].result(
        timeout=10
    )

    delivered: list[tuple[object, int]] = []
    producer = Producer({"bootstrap.servers": kafka_broker, "enable.idempotence": True})
    producer.produce(
        topic,
        key=b"inv_0001",
        value=b'{"type": "invoice.finalized"}',
        on_delivery=lambda err, msg: delivered.append((err, msg.offset())),
    )
    assert producer.flush(10) == 0
    assert delivered == [(None, 0)]

    consumer = Consumer(
        {"bootstrap.servers": kafka_broker, "group.id": "smoke", "enable.auto.commit": False}
    )
    consumer.assign([TopicPartition(topic, 0, OFFSET_BEGINNING)])
    try:
        message = _poll_one(consumer)
    finally:
        consumer.close()
    assert (message.key(), message.value()) == (b"inv_0001", b'{"type": "invoice.finalized"}')


def _card(client: stripe.StripeClient, number: str) -> stripe.PaymentMethod:
    card = {"number": number, "exp_month": 12, "exp_year": 2030, "cvc": "123"}
    return client.v1.payment_methods.create(params={"type": "card", "card": card})


def test_stripe_server_charges_an_attached_card(stripe_client: stripe.StripeClient) -> None:
    customer = stripe_client.v1.customers.create(params={"email": "billing@acme.test"})
    card = _card(stripe_client, "4242424242424242")
    stripe_client.v1.payment_methods.attach(card.id, params={"customer": customer.id})

    intent = stripe_client.v1.payment_intents.create(
        params={
            "amount": 1999,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": card.id,
        }
    )
    assert intent.status == "requires_confirmation"
    intent = stripe_client.v1.payment_intents.confirm(intent.id)
    assert (intent.status, intent.amount) == ("succeeded", 1999)


def test_stripe_server_declines_the_test_decline_cards(stripe_client: stripe.StripeClient) -> None:
    customer = stripe_client.v1.customers.create(params={"email": "billing@globex.test"})

    # localstripe declines 4000000000000002 when it is attached, not when it is charged.
    declined = _card(stripe_client, "4000000000000002")
    with pytest.raises(stripe.CardError) as attach_error:
        stripe_client.v1.payment_methods.attach(declined.id, params={"customer": customer.id})
    assert attach_error.value.code == "card_declined"

    # 4000000000000341 attaches, then every charge is declined: the card dunning tests use.
    failing = _card(stripe_client, "4000000000000341")
    stripe_client.v1.payment_methods.attach(failing.id, params={"customer": customer.id})
    intent = stripe_client.v1.payment_intents.create(
        params={
            "amount": 500,
            "currency": "usd",
            "customer": customer.id,
            "payment_method": failing.id,
        }
    )
    with pytest.raises(stripe.CardError) as charge_error:
        stripe_client.v1.payment_intents.confirm(intent.id)
    assert charge_error.value.code == "card_declined"
    assert stripe_client.v1.payment_intents.retrieve(intent.id).status == "requires_payment_method"


def test_smtp_server_records_a_sent_email(smtp_server: SmtpServer) -> None:
    subject = f"Invoice INV-2025-0001 ({uuid.uuid4().hex[:8]})"
    message = EmailMessage()
    message["From"] = "billing@dictamesh.test"
    message["To"] = "finance@acme.test"
    message["Subject"] = subject
    message.set_content("Your invoice is attached.")
    with smtplib.SMTP(smtp_server.host, smtp_server.port, timeout=10) as smtp:
        smtp.send_message(message)

    (received,) = [m for m in smtp_server.messages if m.message["Subject"] == subject]
    assert (received.sender, received.recipients) == (
        "billing@dictamesh.test",
        ["finance@acme.test"],
    )
    assert received.message.get_content().strip() == "Your invoice is attached."
