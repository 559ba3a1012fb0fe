"""Migration 0012 moves the relay's progress out of the outbox rows and back, losing none;
its triggers keep the queue and the log in step with the outbox."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.warehouse import migrate

PUBLISHED_AT = "2026-11-02 09:00:00+00"


def test_published_rows_go_to_the_log_and_the_rest_to_the_queue_and_back(
    blank_engine: Engine,
) -> None:
    migrate.upgrade(blank_engine, "0011_billing_calendar")
    with blank_engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_outbox (event_id, event_type, aggregate_type,"
                " aggregate_id, payload, published_at) select gen_random_uuid(),"
                " 'billing.invoice.paid', 'invoice', n::text, '{}', case when n % 2 = 0"
                " then cast(:at as timestamptz) end from generate_series(1, 6) n"
            ),
            {"at": PUBLISHED_AT},
        )
    migrate.upgrade(blank_engine)
    with blank_engine.connect() as conn:
        queued = list(conn.scalars(sa.text("select id from dictamesh_billing_outbox_unpublished")))
        logged = conn.execute(
            sa.text("select id, published_at::text from dictamesh_billing_outbox_published")
        ).all()
    assert sorted(queued) == [1, 3, 5]
    assert sorted(logged) == [(2, PUBLISHED_AT), (4, PUBLISHED_AT), (6, PUBLISHED_AT)]

    with blank_engine.begin() as conn:  # a deleted row leaves the queue and the log
        conn.execute(sa.text("delete from dictamesh_billing_outbox where id in (1, 2)"))
    with blank_engine.connect() as conn:
        queued = list(conn.scalars(sa.text("select id from dictamesh_billing_outbox_unpublished")))
        logged = list(conn.scalars(sa.text("select id from dictamesh_billing_outbox_published")))
    assert (sorted(queued), sorted(logged)) == ([3, 5], [4, 6])

    migrate.downgrade(blank_engine, "0011_billing_calendar")
    with blank_engine.connect() as conn:
        rows = conn.execute(
            sa.text("select id, published_at::text from dictamesh_billing_outbox order by id")
        ).all()
    assert rows == [(n, PUBLISHED_AT if n % 2 == 0 else None) for n in range(3, 7)]
