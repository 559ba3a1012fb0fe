"""Invoice finalization (issue 6): numbering, immutability, lifecycle.

Revision ID: 0004_invoicing
Revises: 0003_usage_import
Create Date: 2026-11-25
"""

from dagster_billing.warehouse.migrations.sqlfile import run_sql_file

revision = "0004_invoicing"
down_revision = "0003_usage_import"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0004_invoicing.up.sql")


def downgrade() -> None:
    run_sql_file("0004_invoicing.down.sql")
