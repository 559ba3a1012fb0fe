"""Initial warehouse: catalog, customers, subscriptions, usage, invoices, payments,
credits ledger, outbox, webhook inbox and the hash-chained audit log.

Revision ID: 0001_initial
Revises:
Create Date: 2026-11-25
"""

from dagster_billing.warehouse.migrations.sqlfile import run_sql_file

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0001_initial.up.sql")


def downgrade() -> None:
    run_sql_file("0001_initial.down.sql")
