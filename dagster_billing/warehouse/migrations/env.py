"""Alembic runs on the connection the caller hands over, so the embedded server and a
configured BILLING_DATABASE_DSN are migrated by the same code path."""

from alembic import context

connection = context.config.attributes["connection"]
context.configure(connection=connection, transactional_ddl=True)
with context.begin_transaction():
    context.run_migrations()
