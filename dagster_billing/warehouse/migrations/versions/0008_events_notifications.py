"""Notification recipients, deliveries and attempts; customer webhook endpoints,
deliveries and attempts; outbox rows marked per consumer (issue 13).

Revision ID: 0008_events_notifications
Revises: 0007_payments
Create Date: 2026-12-06
"""

from dagster_billing.warehouse.migrations.sqlfile import run_sql_file

revision = "0008_events_notifications"
down_revision = "0007_payments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0008_events_notifications.up.sql")


def downgrade() -> None:
    run_sql_file("0008_events_notifications.down.sql")
