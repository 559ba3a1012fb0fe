"""Migrations are plain SQL files: partitioned tables, triggers and functions read
best as the DDL Postgres runs, and finance engineers can review them as such."""

from pathlib import Path

from alembic import op

SQL_DIR = Path(__file__).parent / "sql"


def run_sql_file(name: str) -> None:
    """Run one migration file as a single multi-statement batch (no bind parameters)."""
    op.get_bind().connection.driver_connection.execute((SQL_DIR / name).read_text())
