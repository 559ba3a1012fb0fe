"""Bulk usage import staging and usage quota thresholds (issue 4).

Revision ID: 0003_usage_import
Revises: 0002_usage
Create Date: 2026-11-25
"""

from dagster_billing.warehouse.migrations.sqlfile import run_sql_file

revision = "0003_usage_import"
down_revision = "0002_usage"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0003_usage_import.up.sql")


def downgrade() -> None:
    run_sql_file("0003_usage_import.down.sql")
