"""Usage ingestion (issue 4): daily rollup, rejects, ingestion log, invoiced-hour adjustments.

Revision ID: 0002_usage
Revises: 0001_initial
Create Date: 2026-11-25
"""

from dagster_billing.warehouse.migrations.sqlfile import run_sql_file

revision = "0002_usage"
down_revision = "0001_initial"
branch_labels = None
depends_on = None


def upgrade() -> None:
    run_sql_file("0002_usage.up.sql")


def downgrade() -> None:
    run_sql_file("0002_usage.down.sql")
