"""The outbox relay against the real Tansu broker: CloudEvents headers, schemas, keys and
order, a broker paused mid-relay, a relay that dies between produce and mark."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import dagster as dg
import jsonschema
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.assets.events import (
    billing_events_published,
    billing_events_sensor,
    outbox_retention,
)
from dagster_billing.events import catalog
from dagster_billing.events.outbox import Event, write_events
from dagster_billing.events.relay import Relay, mark_published
from dagster_billing.resources import WarehouseResource
from dagster_billing.resources.kafka import KafkaResource
from dagster_billing.warehouse.database import Warehouse
from tests.events.conftest import broker_process, consume, create_topic, paused
from tests.events.helpers import AT, every_type, write_seat_changes
from tests.invoicing.conftest import Billing


def _relay(engine: Engine, bootstrap: str, topic: str, **kwargs: object) -> Relay:
    config = KafkaResource(bootstrap_servers=bootstrap, topic=topic).producer_config()
    return Relay(engine, config, topic, **kwargs)  # type: ignore[arg-type]


def _drain(engine: Engine, bootstrap: str, topic: str) -> int:
    relay = _relay(engine, bootstrap, topic)
    result = relay.run(max_outage_seconds=30)
    relay.close()
    assert result.pending == 0
    return result.published


def _outbox_ids(engine: Engine, since: int = 0) -> set[str]:
    with engine.connect() as conn:
        return set(
            conn.scalars(
                sa.text("select event_id::text from dictamesh_billing_outbox where id > :s"),
                {"s": since},
            )
        )


def _max_id(engine: Engine) -> int:
    with engine.connect() as conn:
        return conn.scalar(sa.text("select coalesce(max(id), 0) from dictamesh_billing_outbox"))


def test_every_event_type_arrives_as_a_valid_cloudevent_keyed_and_ordered_by_organization(
    billing: Billing, engine: Engine, kafka_broker: str, topic: str
) -> None:
    start = _max_id(engine)
    first, second = every_type(billing, engine)
    published = _drain(engine, kafka_broker, topic)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select o.event_id::text, o.event_type, o.payload, p.published_at"
                " from dictamesh_billing_outbox o"
                " left join dictamesh_billing_outbox_published p on p.id = o.id"
                " where o.id > :s order by o.id"
            ),
            {"s": start},
        ).all()
    assert published >= len(rows) == 2 * len(catalog.EVENT_TYPES)
    assert all(row.published_at is not None for row in rows)
    ours = {row.event_id for row in rows}
    messages = [m for m in consume(kafka_broker, topic, published) if m.headers["ce_id"] in ours]
    assert {m.headers["ce_type"] for m in messages} == set(catalog.EVENT_TYPES)

    for message in messages:
        event_type = message.headers["ce_type"]
        assert message.headers["ce_specversion"] == "1.0"
        assert message.headers["ce_source"] == "/dictamesh/billing"
        assert message.headers["content-type"] == "application/json"
        assert message.headers["ce_dataschema"] == catalog.dataschema(event_type)
        assert datetime.fromisoformat(message.headers["ce_time"]).tzinfo is not None
        assert message.headers["ce_subject"]
        jsonschema.validate(
            json.loads(message.value),
            catalog.load_schema(event_type),
            format_checker=jsonschema.FormatChecker(),
        )

    for org in (first, second):
        mine = [m for m in messages if m.key == org]
        assert len({m.partition for m in mine}) == 1  # one partition per organization
        in_outbox_order = [
            r.event_id for r in rows if r.event_id in {m.headers["ce_id"] for m in mine}
        ]
        assert [m.headers["ce_id"] for m in sorted(mine, key=lambda m: m.offset)] == in_outbox_order


def test_a_schema_rejects_a_payload_missing_a_required_field() -> None:
    with pytest.raises(jsonschema.ValidationError, match="'amount' is a required property"):
        jsonschema.validate(
            {"credit_id": 1, "invoice_id": 2, "organization_id": 3, "currency": "USD"},
            catalog.load_schema("billing.credit.applied"),
        )


def test_broker_paused_mid_relay_loses_nothing_and_says_so_once(
    engine: Engine, kafka_broker: str, topic: str, caplog: pytest.LogCaptureFixture
) -> None:
    start = _max_id(engine)
    _drain(engine, kafka_broker, create_topic(kafka_broker))  # earlier tests' rows
    start = _max_id(engine)
    write_seat_changes(engine, "org-outage", 2000, "before")
    broker = broker_process(kafka_broker)
    stop = threading.Event()
    relay = _relay(engine, kafka_broker, topic, batch_size=500, stop=stop)
    caplog.set_level(logging.WARNING, logger="dagster_billing.events.relay")
    follower = threading.Thread(target=relay.follow, kwargs={"idle_seconds": 0.2})
    with paused(broker):
        follower.start()
        write_seat_changes(engine, "org-outage", 1000, "during")
        deadline = time.monotonic() + 30
        while "Kafka unreachable" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.2)
        time.sleep(3)  # several backoff rounds while the broker is stopped
    deadline = time.monotonic() + 60
    while relay.pending() and time.monotonic() < deadline:
        time.sleep(0.2)
    stop.set()
    follower.join(timeout=30)
    assert not follower.is_alive()
    assert relay.pending() == 0
    assert caplog.text.count("Kafka unreachable") == 1
    assert "Kafka reachable again" in caplog.text

    messages = consume(kafka_broker, topic, 3000)
    received = [m.headers["ce_id"] for m in messages]
    assert set(received) == _outbox_ids(engine, start)  # every event arrived
    ordered = [m.headers["ce_id"] for m in sorted(messages, key=lambda m: m.offset)]
    with engine.connect() as conn:
        outbox_order = list(
            conn.scalars(
                sa.text(
                    "select event_id::text from dictamesh_billing_outbox where id > :s order by id"
                ),
                {"s": start},
            )
        )
    first_seen = list(dict.fromkeys(ordered))
    assert first_seen == outbox_order  # one organization: in order, duplicates aside


def test_relay_dying_between_produce_and_mark_duplicates_but_never_loses(
    engine: Engine, kafka_broker: str, topic: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _drain(engine, kafka_broker, create_topic(kafka_broker))
    start = _max_id(engine)
    write_seat_changes(engine, "org-crash", 300, "crash")

    def die(*_: object) -> None:
        raise SystemExit("killed before marking")

    with monkeypatch.context() as patch:
        patch.setattr(Relay, "_mark", die)
        with pytest.raises(SystemExit):
            _relay(engine, kafka_broker, topic).run()
    assert len(_outbox_ids(engine, start)) == 300
    with engine.connect() as conn:
        assert (
            conn.scalar(
                sa.text("select count(*) from dictamesh_billing_outbox_unpublished where id > :s"),
                {"s": start},
            )
            == 300
        )
    assert _drain(engine, kafka_broker, topic) == 300

    messages = consume(kafka_broker, topic, 600)
    ids = [m.headers["ce_id"] for m in messages]
    assert len(ids) == 600  # each event twice...
    assert set(ids) == _outbox_ids(engine, start)  # ...under one ce_id: a consumer dedupes


def test_a_row_whose_transaction_commits_after_a_later_id_is_published_anyway(
    engine: Engine, kafka_broker: str, topic: str
) -> None:
    """The classic outbox gap: ids come from a sequence, but transactions commit in any
    order, so a relay that remembered the highest id it published would skip this row."""
    _drain(engine, kafka_broker, create_topic(kafka_broker))
    start = _max_id(engine)
    with engine.connect() as slow:
        with slow.begin():
            write_events(slow, [_seat_change("org-gap", "slow")])  # the smaller id...
            write_seat_changes(engine, "org-gap", 1, "fast")  # ...commits after this one
            assert _drain(engine, kafka_broker, topic) == 1
        assert _drain(engine, kafka_broker, topic) == 1
    with engine.connect() as conn:
        keys = conn.execute(
            sa.text(
                "select o.dedupe_key from dictamesh_billing_outbox o"
                " join dictamesh_billing_outbox_published p on p.id = o.id"
                " where o.id > :s order by o.id"
            ),
            {"s": start},
        ).scalars()
        assert [k.rsplit(":", 1)[-1] for k in keys] == ["slow", "fast-0"]
    assert {m.headers["ce_id"] for m in consume(kafka_broker, topic, 2)} == _outbox_ids(
        engine, start
    )


def _seat_change(org: str, change_id: str) -> Event:
    return catalog.subscription_updated(
        subscription_id=f"sub-{org}",
        organization_id=org,
        effective_at=AT,
        change_id=change_id,
        changes={"seats": {"from": 1, "to": 2}},
    )


def test_a_relay_stopped_mid_outbox_marks_what_it_sent_so_nothing_arrives_twice(
    engine: Engine, kafka_broker: str, topic: str
) -> None:
    _drain(engine, kafka_broker, create_topic(kafka_broker))
    start = _max_id(engine)
    write_seat_changes(engine, "org-stop", 3000, "stop")
    stop = threading.Event()
    relay = _relay(engine, kafka_broker, topic, batch_size=200, stop=stop)
    follower = threading.Thread(target=relay.follow, kwargs={"idle_seconds": 0.2})
    follower.start()
    deadline = time.monotonic() + 30
    while relay.pending() == 3000 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()  # batches are in flight now
    follower.join(timeout=30)
    assert not follower.is_alive()
    _drain(engine, kafka_broker, topic)

    ids = [m.headers["ce_id"] for m in consume(kafka_broker, topic, 3000)]
    assert len(ids) == 3000
    assert set(ids) == _outbox_ids(engine, start)


def _cli_env(warehouse: Warehouse, bootstrap: str, topic: str) -> dict[str, str]:
    return {
        **os.environ,
        "BILLING_DATABASE_DSN": warehouse.libpq_url(),
        "KAFKA_BOOTSTRAP_SERVERS": bootstrap,
        "KAFKA_EVENTS_TOPIC": topic,
    }


def test_relay_follow_killed_outright_then_restarted_loses_nothing_and_stops_on_sigterm(
    warehouse: Warehouse, engine: Engine, kafka_broker: str, topic: str
) -> None:
    _drain(engine, kafka_broker, create_topic(kafka_broker))
    start = _max_id(engine)
    billing = str(Path(sys.executable).with_name("billing"))
    env = _cli_env(warehouse, kafka_broker, topic)
    argv = [billing, "events", "relay", "--follow", "--batch-size", "200"]
    first = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    write_seat_changes(engine, "org-kill", 3000, "kill")
    deadline = time.monotonic() + 60
    with engine.connect() as conn:
        while time.monotonic() < deadline and not conn.scalar(
            sa.text("select count(*) from dictamesh_billing_outbox_published where id > :s"),
            {"s": start},
        ):
            conn.rollback()
            time.sleep(0.05)
    first.kill()  # SIGKILL: no chance to mark what it produced
    first.wait(timeout=10)

    second = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    relay = _relay(engine, kafka_broker, topic)
    while relay.pending() and time.monotonic() < deadline:
        time.sleep(0.2)
    second.send_signal(signal.SIGTERM)
    output, _ = second.communicate(timeout=30)
    assert second.returncode == 0, output
    assert b"waiting in the outbox" in output
    assert relay.pending() == 0

    messages = consume(kafka_broker, topic, 3000)
    assert set(m.headers["ce_id"] for m in messages) == _outbox_ids(engine, start)
    assert len(messages) >= 3000


def test_asset_publishes_and_without_a_broker_leaves_events_waiting(
    warehouse: Warehouse, engine: Engine, kafka_broker: str, topic: str
) -> None:
    _drain(engine, kafka_broker, create_topic(kafka_broker))
    write_seat_changes(engine, "org-asset", 5, "asset")
    warehouse_resource = WarehouseResource(dsn=warehouse.libpq_url(), data_dir="/nonexistent")
    result = dg.materialize(
        [billing_events_published],
        resources={"warehouse": warehouse_resource, "kafka": KafkaResource()},
    )
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert (metadata["published"].value, metadata["pending"].value) == (0, 5)

    result = dg.materialize(
        [billing_events_published],
        resources={
            "warehouse": warehouse_resource,
            "kafka": KafkaResource(bootstrap_servers=kafka_broker, topic=topic),
        },
    )
    (event,) = result.get_asset_materialization_events()
    metadata = event.materialization.metadata
    assert (metadata["published"].value, metadata["pending"].value) == (5, 0)
    assert len(consume(kafka_broker, topic, 5)) == 5


def test_retention_deletes_only_old_published_rows(warehouse: Warehouse, engine: Engine) -> None:
    with engine.begin() as conn:
        write_events(
            conn,
            [
                Event("billing.invoice.paid", "invoice", str(n), f"retention-{n}", {}, AT)
                for n in range(3)
            ],
        )
        conn.execute(
            sa.text(
                "update dictamesh_billing_outbox set notified_at = now(), webhooks_at = now()"
                " where dedupe_key like 'retention-%'"
            )
        )
        ids = dict(
            conn.execute(
                sa.text(
                    "select dedupe_key, id from dictamesh_billing_outbox"
                    " where dedupe_key like 'retention-%'"
                )
            ).all()
        )
        mark_published(conn, [ids["retention-0"], ids["retention-1"]])
        conn.execute(
            sa.text(
                "update dictamesh_billing_outbox_published set published_at = now() - :age"
                " where id = :id"
            ),
            [
                {"age": timedelta(days=30), "id": ids["retention-0"]},
                {"age": timedelta(days=1), "id": ids["retention-1"]},
            ],
        )
    warehouse_resource = WarehouseResource(dsn=warehouse.libpq_url(), data_dir="/nonexistent")
    result = dg.materialize(
        [outbox_retention],
        resources={
            "warehouse": warehouse_resource,
            "kafka": KafkaResource(outbox_retention_days=7),
        },
    )
    assert result.success
    with engine.connect() as conn:
        left = set(
            conn.scalars(
                sa.text(
                    "select dedupe_key from dictamesh_billing_outbox"
                    " where dedupe_key like 'retention-%'"
                )
            )
        )
        orphans = conn.scalar(
            sa.text(
                "select count(*) from dictamesh_billing_outbox_published p"
                " where not exists (select 1 from dictamesh_billing_outbox o where o.id = p.id)"
            )
        )
    assert left == {"retention-1", "retention-2"}  # the unpublished one stays, taken or not
    assert orphans == 0  # the deleted row's publication went with it


def test_sensor_asks_for_one_run_per_new_batch_of_events(
    warehouse: Warehouse, engine: Engine
) -> None:
    write_seat_changes(engine, "org-sensor", 2, "sensor")
    newest = _max_id(engine)
    resources = {"warehouse": WarehouseResource(dsn=warehouse.libpq_url(), data_dir="/nonexistent")}
    with dg.build_sensor_context(resources=resources, cursor=str(newest - 2)) as context:
        result = billing_events_sensor(context)
    assert isinstance(result, dg.SensorResult)
    assert [r.run_key for r in result.run_requests or []] == [f"outbox-{newest}"]
    assert result.cursor == str(newest)
    with dg.build_sensor_context(resources=resources, cursor=str(newest)) as context:
        assert isinstance(billing_events_sensor(context), dg.SkipReason)


def test_relay_without_a_broker_configured_says_so_in_one_line(warehouse: Warehouse) -> None:
    env = {k: v for k, v in os.environ.items() if k != "KAFKA_BOOTSTRAP_SERVERS"}
    env["BILLING_DATABASE_DSN"] = warehouse.libpq_url()
    billing = str(Path(sys.executable).with_name("billing"))
    done = subprocess.run(
        [billing, "events", "relay"], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2
    assert done.stderr.strip() == (
        "error: KAFKA_BOOTSTRAP_SERVERS: not set; events stay in the outbox"
    )
