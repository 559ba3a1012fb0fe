-- docker-compose.yml: the Dagster instance keeps its runs and schedules in a database of
-- its own on the same server (it has its own alembic_version table).
create database dagster owner billing;
