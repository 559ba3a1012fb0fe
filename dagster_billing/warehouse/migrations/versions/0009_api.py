"""API keys and idempotency records for the REST API (issue 14).

Revision ID: 0009_api
Revises: 0008_events_notifications
Create Date: 2026-12-06
"""

from dagster_billing.warehouse.migrations.sqlfile import run_sql_file

revision = "0009_api"
down_revision = "0008_events_notifications"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0009_api.up.sql")


def downgrade() -> None:
    run_sql_file("0009_api.down.sql")
