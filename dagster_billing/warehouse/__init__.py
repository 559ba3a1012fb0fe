"""The Postgres warehouse: schema, migrations, partition maintenance, audit log."""
