"""Payments (issue 18): attempt states, manual payments, ledger, credit notes.

Revision ID: 0007_payments
Revises: 0006_invoice_lifecycle
Create Date: 2026-12-06
"""

from dagster_billing.warehouse.migrations.sqlfile import run_sql_file

revision = "0007_payments"
down_revision = "0006_invoice_lifecycle"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0007_payments.up.sql")


def downgrade() -> None:
    run_sql_file("0007_payments.down.sql")
