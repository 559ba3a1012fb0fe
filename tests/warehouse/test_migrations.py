"""Migrations go up and down cleanly, and the Core schema matches what they build."""

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.warehouse import migrate, schema

SCHEMA_SNAPSHOT = sa.text(
    """
    select 'column' as kind, table_name || '.' || column_name
           || ' ' || data_type
           || coalesce('(' || numeric_precision || ',' || numeric_scale || ')', '')
           || ' null=' || is_nullable || ' default=' || coalesce(column_default, '') as item
    from information_schema.columns where table_schema = 'public'
    union all
    select 'constraint', conrelid::regclass || ' ' || conname || ' ' || pg_get_constraintdef(oid)
    from pg_constraint where connamespace = 'public'::regnamespace
    union all
    select 'index', indexdef from pg_indexes where schemaname = 'public'
    union all
    select 'trigger', tgrelid::regclass || ' ' || tgname from pg_trigger where not tgisinternal
    union all
    select 'function', proname || '(' || pg_get_function_arguments(oid) || ')'
    from pg_proc where pronamespace = 'public'::regnamespace and prokind = 'f'
        and proname like 'dictamesh_billing%'
    order by 1, 2
    """
)


def _snapshot(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(SCHEMA_SNAPSHOT)]


def test_upgrade_downgrade_upgrade_round_trip(blank_engine: Engine) -> None:
    migrate.upgrade(blank_engine)
    assert migrate.current_revision(blank_engine) == migrate.head_revision()
    first = _snapshot(blank_engine)
    assert any("dictamesh_billing_audit_log_chain" in item for _, item in first)

    migrate.downgrade(blank_engine, "base")
    assert migrate.current_revision(blank_engine) is None
    leftover = [item for _, item in _snapshot(blank_engine) if "dictamesh_billing" in item]
    assert leftover == []

    migrate.upgrade(blank_engine)
    assert _snapshot(blank_engine) == first


def test_core_schema_matches_the_migrated_database(engine: Engine) -> None:
    """Python's view of the tables (schema.py) may not drift from the DDL."""
    inspector = sa.inspect(engine)
    database_tables = {t for t in inspector.get_table_names() if t.startswith("dictamesh_billing")}
    database_tables -= {
        t for t in database_tables if t.startswith(schema.usage_metrics.name + "_p")
    }
    assert set(schema.metadata.tables) == database_tables
    for table in schema.metadata.sorted_tables:
        reflected = {c["name"]: c["type"] for c in inspector.get_columns(table.name)}
        assert list(reflected) == [c.name for c in table.columns], table.name
        for column in table.columns:
            declared = column.type.compile(dialect=engine.dialect)
            actual = reflected[column.name].compile(dialect=engine.dialect)
            assert declared == actual, f"{table.name}.{column.name}: {declared} != {actual}"
        primary_key = inspector.get_pk_constraint(table.name)["constrained_columns"]
        assert primary_key == [c.name for c in table.primary_key.columns], table.name


@pytest.mark.parametrize(
    ("table", "key"),
    [
        ("dictamesh_billing_invoices", ["subscription_id", "period_start"]),
        ("dictamesh_billing_payments", ["invoice_id", "attempt"]),
        ("dictamesh_billing_outbox", ["event_id"]),
        ("dictamesh_billing_payments", ["idempotency_key"]),
    ],
)
def test_idempotency_keys_are_unique_constraints(
    engine: Engine, table: str, key: list[str]
) -> None:
    uniques = sa.inspect(engine).get_unique_constraints(table)
    assert key in [u["column_names"] for u in uniques]


def test_usage_is_range_partitioned_on_the_hour(engine: Engine) -> None:
    with engine.connect() as conn:
        strategy, key = conn.execute(
            sa.text(
                "select p.partstrat, a.attname from pg_partitioned_table p"
                " join pg_attribute a on a.attrelid = p.partrelid and a.attnum = p.partattrs[0]"
                " where p.partrelid = 'dictamesh_billing_usage_metrics'::regclass"
            )
        ).one()
    assert (strategy, key) == ("r", "hour_start")
