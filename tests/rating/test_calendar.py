"""dbt and Python act on the same billing periods: the calendar model dbt bills from and
the Python callers (quota thresholds, cancel at period end, renewals) read one calendar,
the warehouse's. A second calendar on either side would fail here on the dates where
calendars go wrong: a Jan 31 anchor across a leap February, a Feb 29 annual anchor, a
time of day, and a session that is not in UTC."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from dagster_billing import customers
from dagster_billing.assets.rating import billing_dbt_models, billing_invoice_models
from dagster_billing.definitions import build_resources
from dagster_billing.resources import WarehouseResource
from dagster_billing.settings import load_settings
from dagster_billing.usage.thresholds import record_threshold_crossings
from dagster_billing.warehouse.calendar import billing_period
from dagster_billing.warehouse.database import Warehouse
from tests.usage.helpers import create_organizations, insert_usage

MONTHLY_ANCHOR = datetime(2024, 1, 31, 9, tzinfo=UTC)
ANNUAL_ANCHOR = datetime(2024, 2, 29, 9, tzinfo=UTC)
PARTITION = "2026-03-01"  # the spine reaches the period holding 2026-03-02


def _subscribe(engine: Engine) -> None:
    create_organizations(engine, "cal-monthly", "cal-annual")
    with engine.begin() as conn:
        for name, anchor, cycle in (
            ("monthly", MONTHLY_ANCHOR, "monthly"),
            ("annual", ANNUAL_ANCHOR, "annual"),
        ):
            customers.create_subscription(
                conn,
                organization=f"cal-{name}",
                plan="starter",
                seats=1,
                billing_cycle=cycle,
                start=anchor,
                external_id=f"sub-cal-{name}",
                actor="test",
            )


def _dbt_calendar(engine: Engine) -> dict[str, list[tuple[datetime, ...]]]:
    """int_billing_calendar as dbt built it: per subscription, its periods in order."""
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "select s.external_id, c.period_start, c.period_end, c.fee_period_start,"
                " c.fee_period_end from analytics_intermediate.int_billing_calendar c"
                " join dictamesh_billing_subscriptions s on s.id = c.subscription_id"
                " where s.external_id like 'sub-cal-%' order by 1, c.period_index"
            )
        ).all()
    periods: dict[str, list[tuple[datetime, ...]]] = {}
    for external_id, *bounds in rows:
        periods.setdefault(external_id, []).append(tuple(b.astimezone(UTC) for b in bounds))
    return periods


def _python_period(conn: Connection, anchor: datetime, cycle: str, at: datetime) -> tuple:
    found = billing_period(conn, anchor, cycle, at)
    return found.start, found.end, found.fee_start, found.fee_end


def test_python_and_dbt_agree_on_every_period(warehouse: Warehouse, engine: Engine) -> None:
    _subscribe(engine)
    resources = {
        **build_resources(load_settings()),
        "warehouse": WarehouseResource(dsn=warehouse.libpq_url(), data_dir="unused"),
    }
    assert dg.materialize([billing_dbt_models], resources=resources).success
    assert dg.materialize(
        [billing_invoice_models], resources=resources, partition_key=PARTITION
    ).success
    dbt = _dbt_calendar(engine)

    def day(at: datetime) -> str:
        assert (at.hour, at.minute) == (9, 0)  # the anchor's time of day, in UTC
        return at.date().isoformat()

    # What dbt bills, by hand (docs/rate-card.md: month-end anchors, annual term years).
    monthly, annual = dbt["sub-cal-monthly"], dbt["sub-cal-annual"]
    starts = [day(p[0]) for p in monthly]
    assert len(starts) == 26 and starts[-1] == "2026-02-28"
    assert starts[:5] == ["2024-01-31", "2024-02-29", "2024-03-31", "2024-04-30", "2024-05-31"]
    assert [d for d in starts if d[5:7] == "02"] == ["2024-02-29", "2025-02-28", "2026-02-28"]
    assert [p[0] for p in monthly[1:]] == [p[1] for p in monthly[:-1]]
    assert all(p[2:] == p[:2] for p in monthly)
    assert len(annual) == 25
    assert [day(p[0]) for p in annual][:3] == ["2024-02-29", "2024-03-29", "2024-04-29"]
    assert [sorted({(day(p[2]), day(p[3])) for p in annual[y : y + 12]}) for y in (0, 12, 24)] == [
        [("2024-02-29", "2025-02-28")],
        [("2025-02-28", "2026-02-28")],
        [("2026-02-28", "2027-02-28")],
    ]

    # Python asks for the period holding any instant: first, last and middle of each.
    with engine.connect() as conn:
        conn.execute(sa.text("set time zone 'Pacific/Chatham'"))  # +13:45: not UTC
        for anchor, cycle, periods in (
            (MONTHLY_ANCHOR, "monthly", monthly),
            (ANNUAL_ANCHOR, "annual", annual),
        ):
            for period in periods:
                start, end = period[0], period[1]
                for at in (start, start + (end - start) / 2, end - timedelta(microseconds=1)):
                    assert _python_period(conn, anchor, cycle, at) == period, (cycle, at)

    # The quota threshold's period is dbt's: 2024-01-31 09:00 to 02-29 09:00 is 696 hours;
    # 100 GB stored for 500 of them averages 71.839080 GB against Starter's 50.
    org = create_organizations(engine, "cal-monthly")["cal-monthly"]
    for hour in range(500):
        insert_usage(engine, org, "storage", MONTHLY_ANCHOR + timedelta(hours=hour), 100)
    with engine.begin() as conn:
        crossings = record_threshold_crossings(conn, datetime(2024, 2, 29, 8, tzinfo=UTC))
        period = conn.execute(
            sa.text(
                "select period_start, period_end, usage"
                " from dictamesh_billing_usage_threshold_crossings where organization_id = :o"
                " and threshold = 100"
            ),
            {"o": org},
        ).one()
    assert {(c.organization, c.metric, c.threshold) for c in crossings} == {
        ("cal-monthly", "storage", 80),
        ("cal-monthly", "storage", 100),
    }
    assert (period.period_start, period.period_end) == monthly[0][:2]
    assert period.usage == Decimal("71.839080")

    # Cancelling at period end ends where dbt's fee period ends (the term year if annual).
    with engine.connect() as conn:
        for name, at, expected in (
            ("monthly", datetime(2024, 2, 29, 8, tzinfo=UTC), monthly[0][3]),
            ("annual", datetime(2026, 2, 28, 8, tzinfo=UTC), annual[23][3]),
        ):
            canceled = customers.cancel_subscription(
                conn, f"sub-cal-{name}", actor="test", at_period_end=True, at=at
            )
            assert canceled["cancel_at"] == expected
        conn.rollback()
