"""The default catalog matches docs/rate-card.md and syncs idempotently."""

from decimal import Decimal
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.catalog import DEFAULT_CATALOG, CatalogError, load_catalog
from dagster_billing.catalog.sync import sync_catalog


def _price(conn: sa.Connection, sql: str, **params: str) -> Decimal:
    return conn.scalar(sa.text(sql), params)


@pytest.mark.parametrize(
    ("plan", "currency", "monthly", "annual", "seat"),
    [
        ("starter", "USD", "99.000000", "990.000000", "49.000000"),
        ("starter", "EUR", "91.080000", "910.800000", "45.080000"),
        ("professional", "GBP", "394.210000", "3942.100000", "78.210000"),
        ("enterprise", "JPY", "374850.000000", "3748500.000000", "29850.000000"),
        ("enterprise", "BRL", "12495.000000", "124950.000000", "995.000000"),
    ],
)
def test_price_books_are_usd_times_the_catalog_factor(
    engine: Engine, plan: str, currency: str, monthly: str, annual: str, seat: str
) -> None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.text(
                "select monthly_fee, annual_fee, seat_price_monthly"
                " from dictamesh_billing_price_books where plan_id = :p and currency = :c"
            ),
            {"p": plan, "c": currency},
        ).one()
    assert tuple(str(v) for v in row) == (monthly, annual, seat)


def test_free_plan_sells_no_seats(engine: Engine) -> None:
    with engine.connect() as conn:
        seat_price, sellable = conn.execute(
            sa.text(
                "select b.seat_price_monthly, p.seats_sellable from dictamesh_billing_price_books b"
                " join dictamesh_billing_subscription_plans p on p.id = b.plan_id"
                " where b.plan_id = 'free' and b.currency = 'USD'"
            )
        ).one()
    assert seat_price is None and sellable is False


def test_gbp_top_api_tier_rounds_half_up_to_six_decimals(engine: Engine) -> None:
    """Rate card, six decimals: 0.000001 x 0.79 = 0.00000079 -> 0.000001."""
    with engine.connect() as conn:
        price = _price(
            conn,
            "select unit_price from dictamesh_billing_pricing_tiers"
            " where metric = 'api_calls' and currency = 'GBP' and tier = 4",
        )
    assert price == Decimal("0.000001")


def test_tiers_are_in_billing_units_with_inclusive_upper_bounds(engine: Engine) -> None:
    with engine.connect() as conn:
        tiers = conn.execute(
            sa.text(
                "select lower_bound, upper_bound, unit_price from dictamesh_billing_pricing_tiers"
                " where metric = 'api_calls' and currency = 'USD' order by tier"
            )
        ).all()
    assert [tuple(map(str, t)) for t in tiers] == [
        ("0.000000", "10000.000000", "0.010000"),
        ("10000.000000", "100000.000000", "0.005000"),
        ("100000.000000", "1000000.000000", "0.001000"),
        ("1000000.000000", "None", "0.000001"),
    ]


def test_second_sync_changes_nothing(engine: Engine) -> None:
    with engine.begin() as conn:
        changed = sync_catalog(conn, load_catalog())
    assert sum(changed.values()) == 0


def test_sync_leaves_operator_rows_alone_and_restores_catalog_rows(engine: Engine) -> None:
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "update dictamesh_billing_price_books set monthly_fee = 79, source = 'operator'"
                " where plan_id = 'starter' and currency = 'EUR'"
            )
        )
        conn.execute(
            sa.text(
                "update dictamesh_billing_price_books set monthly_fee = 1"
                " where plan_id = 'starter' and currency = 'GBP'"
            )
        )
        changed = sync_catalog(conn, load_catalog())
        fees = dict(
            conn.execute(
                sa.text(
                    "select currency, monthly_fee from dictamesh_billing_price_books"
                    " where plan_id = 'starter' and currency in ('EUR', 'GBP')"
                )
            ).all()
        )
        conn.rollback()
    assert changed["dictamesh_billing_price_books"] == 1
    assert fees == {"EUR": Decimal("79"), "GBP": Decimal("78.21")}


def test_a_bad_catalog_names_the_field(tmp_path: Path) -> None:
    broken = tmp_path / "catalog.yaml"
    broken.write_text(DEFAULT_CATALOG.read_text().replace('monthly_fee: "99"', 'monthly_fee: "-1"'))
    with pytest.raises(CatalogError, match=r"plans\.1\.monthly_fee"):
        load_catalog(broken)
