"""Outbox publication as its own rows (issue 13): an unpublished queue and a published log
instead of updating `published_at` on every wide outbox row.

Revision ID: 0012_outbox_published
Revises: 0011_billing_calendar
Create Date: 2026-12-06
"""

from dagster_billing.warehouse.migrations.sqlfile import run_sql_file

revision = "0012_outbox_published"
down_revision = "0011_billing_calendar"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0012_outbox_published.up.sql")


def downgrade() -> None:
    run_sql_file("0012_outbox_published.down.sql")
