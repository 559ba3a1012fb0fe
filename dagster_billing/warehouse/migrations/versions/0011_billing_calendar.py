"""The billing calendar and usage averaging as SQL functions (issue 17): one definition
that the dbt models compile to and the Python callers query.

Revision ID: 0011_billing_calendar
Revises: 0010_rerate_adjustments
Create Date: 2026-12-08
"""

from dagster_billing.warehouse.migrations.sqlfile import run_sql_file

revision = "0011_billing_calendar"
down_revision = "0010_rerate_adjustments"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0011_billing_calendar.up.sql")


def downgrade() -> None:
    run_sql_file("0011_billing_calendar.down.sql")
