"""A module's warehouse with the operations data of `data.py` loaded once."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.engine import Engine

from tests.observability.data import (
    create_revenue_marts,
    load_credits,
    load_operations_data,
    load_run_failure,
)


@pytest.fixture(scope="module")
def ops_engine(engine: Engine) -> Engine:
    now = datetime.now(UTC)
    with engine.begin() as conn:
        load_operations_data(conn, now)
        load_credits(conn)
        load_run_failure(conn, now)
        create_revenue_marts(conn)
    return engine
