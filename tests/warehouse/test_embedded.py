"""The embedded server runs with the platform's settings, new data directory or old."""

import tempfile
from pathlib import Path

import sqlalchemy as sa

from dagster_billing.warehouse.database import EMBEDDED_SETTINGS, _psycopg_url, embedded_server


def _settings(pg_data: Path) -> tuple[str, str]:
    server = embedded_server(pg_data)
    engine = sa.create_engine(_psycopg_url(server.get_uri("postgres")))
    try:
        with engine.connect() as conn:
            return conn.scalar(sa.text("show wal_level")), conn.scalar(
                sa.text("show max_wal_senders")
            )
    finally:
        engine.dispose()
        server.cleanup()  # the last handle: stops the server


def test_embedded_server_starts_with_minimal_wal_and_keeps_one_copy_of_the_settings() -> None:
    with tempfile.TemporaryDirectory(prefix="billing-embedded-") as tmp:
        pg_data = Path(tmp) / "pgdata"
        assert _settings(pg_data) == ("minimal", "0")
        conf = pg_data / "postgresql.conf"
        # a data directory from before the settings existed gets them at its next start
        conf.write_text(conf.read_text().replace(EMBEDDED_SETTINGS, ""))
        assert _settings(pg_data) == ("minimal", "0")
        assert conf.read_text().count(EMBEDDED_SETTINGS) == 1
