"""Invoice lifecycle in the database (issue 17): statuses with their fields, set-once facts.

Revision ID: 0006_invoice_lifecycle
Revises: 0005_usage_day_versions
Create Date: 2026-12-06
"""

from dagster_billing.warehouse.migrations.sqlfile import run_sql_file

revision = "0006_invoice_lifecycle"
down_revision = "0005_usage_day_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0006_invoice_lifecycle.up.sql")


def downgrade() -> None:
    run_sql_file("0006_invoice_lifecycle.down.sql")
