"""An index on the daily rollup's day: the billing run reads one month of it, not all.

Revision ID: 0006_usage_daily_day_index
Revises: 0005_usage_day_versions
Create Date: 2026-12-04
"""

from dagster_billing.warehouse.migrations.sqlfile import run_sql_file

revision = "0006_usage_daily_day_index"
down_revision = "0005_usage_day_versions"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0006_usage_daily_day_index.up.sql")


def downgrade() -> None:
    run_sql_file("0006_usage_daily_day_index.down.sql")
