"""Re-rating adjustments (issue 16): price corrections of issued invoices, applied once.

Revision ID: 0010_rerate_adjustments
Revises: 0009_api
Create Date: 2026-12-06
"""

from dagster_billing.warehouse.migrations.sqlfile import run_sql_file

revision = "0010_rerate_adjustments"
down_revision = "0009_api"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0010_rerate_adjustments.up.sql")


def downgrade() -> None:
    run_sql_file("0010_rerate_adjustments.down.sql")
