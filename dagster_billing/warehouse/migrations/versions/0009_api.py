"""API keys and idempotency records for the REST API (issue 14).

Revision ID: 0009_api
Revises: 0005_usage_day_versions
Create Date: 2026-12-06
"""

from dagster_billing.warehouse.migrations.sqlfile import run_sql_file

revision = "0009_api"
down_revision = "0005_usage_day_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0009_api.up.sql")


def downgrade() -> None:
    run_sql_file("0009_api.down.sql")
