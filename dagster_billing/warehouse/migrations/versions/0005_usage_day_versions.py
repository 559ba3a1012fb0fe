"""Daily rollup versions (issue 5): rating reads a day from the rollup only while current.

Revision ID: 0005_usage_day_versions
Revises: 0004_invoicing
Create Date: 2026-12-02
"""

from dagster_billing.warehouse.migrations.sqlfile import run_sql_file

revision = "0005_usage_day_versions"
down_revision = "0004_invoicing"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0005_usage_day_versions.up.sql")


def downgrade() -> None:
    run_sql_file("0005_usage_day_versions.down.sql")
