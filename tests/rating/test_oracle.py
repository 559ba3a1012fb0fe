"""Unit tests of the billing oracle with hand-computed amounts (docs/rate-card.md).

The oracle is only a useful referee if its own numbers are checked by hand: each test
writes the arithmetic out in comments, from the rate card, not from the oracle's code.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from tests.rating.oracle import add_months, bill, parse_ts, price, round_minor


def run(
    sub: dict[str, Any],
    *,
    as_of: str,
    org: dict[str, Any] | None = None,
    usage: list[dict[str, Any]] | None = None,
) -> list[dict[str, Any]]:
    """Bill one organization ("acme", USD unless told) with one subscription."""
    organization = {"id": "acme", "name": "Acme Corp", "currency": "USD", **(org or {})}
    subscription = {"id": "sub-1", "organization": "acme", "cycle": "monthly", **sub}
    scenario = {
        "as_of": as_of,
        "organizations": [organization],
        "subscriptions": [subscription],
        "usage": usage or [],
    }
    return bill(scenario)["invoices"]


def amounts(invoice: dict[str, Any]) -> list[tuple[str, str]]:
    """(kind or overage metric, amount) per line, in invoice order."""
    return [(line.get("metric", line["kind"]), line["amount"]) for line in invoice["lines"]]


# A zero invoice without arrears to bill shows the period's usage per metric (A13).
NOTHING_USED = [
    ("api_calls", "0.00"),
    ("storage", "0.00"),
    ("transfer", "0.00"),
    ("query_processing", "0.00"),
]


def totals(invoice: dict[str, Any]) -> tuple[str, ...]:
    keys = ("subtotal", "discount", "tax", "total", "credits_applied", "amount_due")
    return tuple(invoice[k] for k in keys)


def dates(invoices: list[dict[str, Any]]) -> list[str]:
    return [invoice["billing_date"] for invoice in invoices]


def calls(hour: str, quantity: str, metric: str = "api_calls") -> dict[str, Any]:
    return {"organization": "acme", "metric": metric, "hour": hour, "quantity": quantity}


def hourly(metric: str, start: str, end: str, per_hour: str) -> dict[str, Any]:
    return {
        "organization": "acme",
        "metric": metric,
        "from": start,
        "to": end,
        "per_hour": per_hour,
    }


# ---- helpers of the spec itself -----------------------------------------------------------


def test_half_up_rounds_away_from_zero_for_credits() -> None:
    # rule half up: -49.505 -> -49.51; JPY has no decimals: 1.5 -> 2
    assert round_minor(Decimal("-49.505"), "USD") == Decimal("-49.51")
    assert round_minor(Decimal("1.5"), "JPY") == Decimal("2")
    assert str(round_minor(Decimal("-0.004"), "USD")) == "0.00"


def test_price_book_rounds_gbp_top_api_tier_up_to_one_millionth() -> None:
    # rule six decimals: 0.000001 x 0.79 = 0.00000079 -> 0.000001
    assert price("0.000001", "GBP") == Decimal("0.000001")
    assert price("49", "EUR") == Decimal("45.08")  # 49 x 0.92


def test_month_end_anchor_falls_back_and_returns() -> None:
    anchor = parse_ts("2026-01-31T00:00:00Z")
    got = [add_months(anchor, k).date().isoformat() for k in range(4)]
    assert got == ["2026-01-31", "2026-02-28", "2026-03-31", "2026-04-30"]
    leap = parse_ts("2028-01-31T00:00:00Z")
    assert add_months(leap, 1).date().isoformat() == "2028-02-29"


# ---- invoices ---------------------------------------------------------------------------


def test_first_invoice_holds_only_advance_lines_then_overage_in_arrears() -> None:
    invoices = run(
        {"plan": "starter", "seats": 5, "start": "2026-04-01T00:00:00Z"},
        as_of="2026-05-01T00:00:00Z",
        usage=[calls("2026-04-03T10:00:00Z", "3456789")],
    )
    first, second = invoices
    # fee 99; seats (5 - 3) x 49 = 98; subtotal 197; tax 19.70; total 216.70
    assert first["billing_date"] == "2026-04-01T00:00:00Z"
    assert amounts(first) == [("subscription_fee", "99.00"), ("seats", "98.00")]
    assert first["lines"][0]["unit_amount"] == "99.000000"
    assert first["lines"][1]["quantity"] == "2"
    assert totals(first) == ("197.00", "0.00", "19.70", "216.70", "0.00", "216.70")
    # overage: (3,456,789 - 1,000,000) / 1,000 = 2456.789 units x 0.01 = 24.56789 -> 24.57
    # 99 + 98 + 24.57 = 221.57; tax 22.157 -> 22.16; total 243.73
    assert second["lines"][2] == {
        "kind": "overage",
        "description": "API calls overage",
        "metric": "api_calls",
        "quantity": "2456.789",
        "amount": "24.57",
    }
    assert totals(second) == ("221.57", "0.00", "22.16", "243.73", "0.00", "243.73")


def test_month_end_anchor_bills_feb_28_then_mar_31_with_full_quota_in_february() -> None:
    invoices = run(
        {"plan": "starter", "seats": 3, "start": "2026-01-31T00:00:00Z"},
        as_of="2026-04-30T00:00:00Z",
        usage=[calls("2026-02-27T23:00:00Z", "1500000"), calls("2026-02-28T00:00:00Z", "1")],
    )
    assert dates(invoices) == [
        "2026-01-31T00:00:00Z",
        "2026-02-28T00:00:00Z",
        "2026-03-31T00:00:00Z",
        "2026-04-30T00:00:00Z",
    ]
    # period [Jan 31, Feb 28) gets the full 1,000,000 quota (full monthly quota):
    # 500 units x 0.01 = 5.00;
    # the call at Feb 28 00:00 belongs to the next period (half-open windows)
    assert amounts(invoices[1]) == [("subscription_fee", "99.00"), ("api_calls", "5.00")]
    assert amounts(invoices[2]) == [("subscription_fee", "99.00")]


def test_leap_year_feb_29_anchor_on_annual_plan_falls_back_to_feb_28() -> None:
    invoices = run(
        {"plan": "starter", "cycle": "annual", "seats": 3, "start": "2024-02-29T00:00:00Z"},
        as_of="2025-03-01T00:00:00Z",
    )
    # monthly billing dates 2024-02-29, 03-29, ..., 2025-01-29, then 2025-02-28 (13 invoices)
    assert dates(invoices)[:2] == ["2024-02-29T00:00:00Z", "2024-03-29T00:00:00Z"]
    assert dates(invoices)[-1] == "2025-02-28T00:00:00Z"
    assert len(invoices) == 13
    # fee lines on the yearly anchors only; months between are zero-total invoices
    assert amounts(invoices[0]) == [("subscription_fee", "990.00")]
    assert amounts(invoices[1]) == NOTHING_USED
    assert totals(invoices[1]) == ("0.00", "0.00", "0.00", "0.00", "0.00", "0.00")
    assert amounts(invoices[-1]) == [("subscription_fee", "990.00")]


def test_leap_february_storage_average_uses_its_696_hours() -> None:
    invoices = run(
        {"plan": "starter", "seats": 3, "start": "2028-01-31T00:00:00Z"},
        as_of="2028-02-29T00:00:00Z",
        usage=[hourly("storage", "2028-01-31T00:00:00Z", "2028-02-28T00:00:00Z", "87")],
    )
    # [Jan 31, Feb 29) = 29 days = 696 h; 672 h x 87 GB = 58,464 / 696 = 84 GB avg
    # overage 84 - 50 = 34 GB x 0.50 = 17.00
    assert amounts(invoices[1]) == [("subscription_fee", "99.00"), ("storage", "17.00")]


def test_upgrade_mid_period_prorates_fee_and_seats_and_quotas() -> None:
    invoices = run(
        {
            "plan": "starter",
            "seats": 5,
            "start": "2026-04-01T00:00:00Z",
            "changes": [{"at": "2026-04-11T06:00:00Z", "plan": "professional"}],
        },
        as_of="2026-05-01T00:00:00Z",
        usage=[calls("2026-04-20T00:00:00Z", "7000000")],
    )
    may = invoices[1]
    # fraction = (May 1 - Apr 11 06:00) / 30 days = 474 h / 720 h
    # fee pair: -(99 x 474/720) = -65.175 -> -65.18; 499 x 474/720 = 328.508333.. -> 328.51
    # seats: starter (5-3) x 49 = 98 -> pro extra 0: -(98 x 474/720) = -64.516667 -> -64.52; +0
    # quota: 1M x 246/720 + 10M x 474/720 = 6,925,000; 7,000,000 - that = 75 units -> 0.75
    assert amounts(may) == [
        ("subscription_fee", "499.00"),
        ("proration", "-65.18"),
        ("proration", "328.51"),
        ("proration", "-64.52"),
        ("proration", "0.00"),
        ("api_calls", "0.75"),
    ]
    # 499 - 65.18 + 328.51 - 64.52 + 0.75 = 698.56; tax 69.856 -> 69.86
    assert totals(may) == ("698.56", "0.00", "69.86", "768.42", "0.00", "768.42")


def test_seat_decrease_prorates_only_the_seat_component() -> None:
    invoices = run(
        {
            "plan": "professional",
            "seats": 15,
            "start": "2026-04-01T00:00:00Z",
            "changes": [{"at": "2026-04-21T00:00:00Z", "seats": 12}],
        },
        as_of="2026-05-01T00:00:00Z",
    )
    # extra seats 5 x 99 = 495 -> 2 x 99 = 198; fraction 10/30
    # credit -495/3 = -165.00; charge 198/3 = 66.00; May seats 198
    assert amounts(invoices[1]) == [
        ("subscription_fee", "499.00"),
        ("seats", "198.00"),
        ("proration", "-165.00"),
        ("proration", "66.00"),
    ]
    # 499 + 198 - 165 + 66 = 598.00; tax 59.80
    assert totals(invoices[1]) == ("598.00", "0.00", "59.80", "657.80", "0.00", "657.80")


def test_immediate_cancel_credits_unused_time_and_prorates_quota_and_storage() -> None:
    invoices = run(
        {
            "plan": "starter",
            "seats": 4,
            "start": "2026-04-01T00:00:00Z",
            "cancel_at": "2026-05-11T00:00:00Z",
        },
        as_of="2026-07-01T00:00:00Z",
        usage=[
            calls("2026-05-05T00:00:00Z", "1000000"),
            hourly("storage", "2026-05-01T00:00:00Z", "2026-05-11T00:00:00Z", "100"),
            calls("2026-05-20T00:00:00Z", "9999999"),  # after the cancellation: not billed
        ],
    )
    assert dates(invoices) == [
        "2026-04-01T00:00:00Z",
        "2026-05-01T00:00:00Z",
        "2026-05-11T00:00:00Z",
    ]
    final = invoices[2]
    # ran 10 of 31 days of [May 1, Jun 1); unused 21/31
    # fee -(99 x 21/31) = -67.064516 -> -67.06; seats -(49 x 21/31) = -33.193548 -> -33.19
    # api quota 1M x 10/31 = 322,580.645..; (1M - that)/1000 = 677.419355 units -> 6.774194 -> 6.77
    # storage 240 h x 100 = 24,000 / 744 h = 32.258064..; quota 50 x 10/31 = 16.129032..;
    #   16.129032 GB x 0.50 = 8.064516 -> 8.06
    assert amounts(final) == [
        ("proration", "-67.06"),
        ("proration", "-33.19"),
        ("api_calls", "6.77"),
        ("storage", "8.06"),
    ]
    # -67.06 - 33.19 + 6.77 + 8.06 = -85.42: negative subtotal, total 0 (rule negative subtotal)
    assert totals(final) == ("-85.42", "0.00", "0.00", "0.00", "0.00", "0.00")


def test_cancel_on_a_billing_date_bills_only_arrears_and_nothing_after() -> None:
    invoices = run(
        {
            "plan": "starter",
            "seats": 3,
            "start": "2026-04-01T00:00:00Z",
            "cancel_at": "2026-06-01T00:00:00Z",
        },
        as_of="2026-08-01T00:00:00Z",
        usage=[calls("2026-05-10T00:00:00Z", "150", metric="transfer")],
    )
    assert dates(invoices)[-1] == "2026-06-01T00:00:00Z"
    assert len(invoices) == 3
    # transfer 150 - 100 = 50 GB x 0.50 = 25.00; tax 2.50
    assert amounts(invoices[2]) == [("transfer", "25.00")]
    assert totals(invoices[2]) == ("25.00", "0.00", "2.50", "27.50", "0.00", "27.50")


def test_annual_plan_bills_seats_upfront_and_overage_monthly() -> None:
    invoices = run(
        {"plan": "starter", "cycle": "annual", "seats": 5, "start": "2026-01-15T00:00:00Z"},
        as_of="2027-01-15T00:00:00Z",
        usage=[
            calls("2026-02-01T00:00:00Z", "1200000"),
            calls("2026-12-20T00:00:00Z", "1000500"),
        ],
    )
    assert len(invoices) == 13
    # fee 990; seats 2 x (12 x 49 = 588) = 1176; subtotal 2166; tax 216.60
    assert amounts(invoices[0]) == [("subscription_fee", "990.00"), ("seats", "1176.00")]
    assert invoices[0]["lines"][1]["unit_amount"] == "588.000000"
    assert totals(invoices[0])[3] == "2382.60"
    # Feb 15: [Jan 15, Feb 15) monthly quota 1,000,000: 200 units x 0.01 = 2.00
    assert amounts(invoices[1]) == [("api_calls", "2.00")]
    assert amounts(invoices[2]) == NOTHING_USED
    # 2027-01-15: next term upfront, plus December's 0.5 units x 0.01 = 0.005 -> 0.01
    assert amounts(invoices[12]) == [
        ("subscription_fee", "990.00"),
        ("seats", "1176.00"),
        ("api_calls", "0.01"),
    ]


def test_annual_seat_change_prorates_over_the_term_year_on_next_monthly_date() -> None:
    invoices = run(
        {
            "plan": "starter",
            "cycle": "annual",
            "seats": 3,
            "start": "2026-01-01T00:00:00Z",
            "changes": [{"at": "2026-07-02T00:00:00Z", "seats": 5}],
        },
        as_of="2026-08-01T00:00:00Z",
    )
    august = invoices[-1]
    assert august["billing_date"] == "2026-08-01T00:00:00Z"
    # term year 2026 has 365 days; remaining from Jul 2 = 183 days
    # credit -(0 x ..) = 0.00; charge 2 x 588 = 1176 x 183/365 = 589.610959 -> 589.61
    assert amounts(august) == [("proration", "0.00"), ("proration", "589.61")]
    assert amounts(invoices[6]) == NOTHING_USED  # Jul 1: the change is not yet in arrears


def test_annual_immediate_cancel_credits_rest_of_term_year() -> None:
    invoices = run(
        {
            "plan": "starter",
            "cycle": "annual",
            "seats": 3,
            "start": "2026-01-01T00:00:00Z",
            "cancel_at": "2026-07-02T00:00:00Z",
        },
        as_of="2026-12-01T00:00:00Z",
    )
    assert dates(invoices)[-1] == "2026-07-02T00:00:00Z"
    # -(990 x 183/365) = -496.356164.. -> -496.36
    assert amounts(invoices[-1]) == [("proration", "-496.36")]


def test_graduated_and_volume_agree_at_the_inclusive_tier_edge_and_split_after() -> None:
    def storage_line(per_hour: str, mode: str) -> str:
        invoices = run(
            {"plan": "starter", "seats": 3, "start": "2026-04-01T00:00:00Z", "pricing_mode": mode},
            as_of="2026-05-01T00:00:00Z",
            usage=[hourly("storage", "2026-04-01T00:00:00Z", "2026-05-01T00:00:00Z", per_hour)],
        )
        return invoices[1]["lines"][1]["amount"]

    # average 1050 - 50 = 1000 GB: tier 1 either way (bounds inclusive): 1000 x 0.50 = 500
    assert storage_line("1050", "graduated") == "500.00"
    assert storage_line("1050", "volume") == "500.00"
    # 1001 GB: graduated 500 + 1 x 0.25 = 500.25; volume 1001 x 0.25 = 250.25
    assert storage_line("1051", "graduated") == "500.25"
    assert storage_line("1051", "volume") == "250.25"


def test_graduated_api_calls_cross_tiers() -> None:
    def api_line(mode: str) -> str:
        invoices = run(
            {"plan": "starter", "seats": 3, "start": "2026-04-01T00:00:00Z", "pricing_mode": mode},
            as_of="2026-05-01T00:00:00Z",
            usage=[calls("2026-04-02T00:00:00Z", "16000000")],
        )
        return invoices[1]["lines"][1]["amount"]

    # 15,000 units; graduated 10,000 x 0.01 + 5,000 x 0.005 = 125; volume 15,000 x 0.005 = 75
    assert api_line("graduated") == "125.00"
    assert api_line("volume") == "75.00"


def test_storage_average_counts_missing_hours_as_zero() -> None:
    invoices = run(
        {"plan": "starter", "seats": 3, "start": "2026-04-01T00:00:00Z"},
        as_of="2026-05-01T00:00:00Z",
        usage=[
            hourly("storage", "2026-04-01T00:00:00Z", "2026-04-16T00:00:00Z", "200"),
            calls("2026-05-01T00:00:00Z", "99999", metric="storage"),  # next period
        ],
    )
    # 360 h x 200 GB over 720 h = 100 GB; 100 - 50 = 50 x 0.50 = 25.00
    assert amounts(invoices[1]) == [("subscription_fee", "99.00"), ("storage", "25.00")]
    assert invoices[1]["lines"][1]["quantity"] == "50"


def test_promotions_apply_in_order_and_percent_lasts_one_invoice() -> None:
    invoices = run(
        {"plan": "starter", "seats": 3, "start": "2026-04-01T00:00:00Z"},
        as_of="2026-05-01T00:00:00Z",
        org={
            "promotions": [
                {"percent_off": "20", "duration_periods": 1},
                {"amount_off": "10.00"},
            ]
        },
    )
    # 1st: 99 x 20% = 19.80 -> 79.20 - 10 = 69.20; discount 29.80; tax 6.92; total 76.12
    assert totals(invoices[0]) == ("99.00", "29.80", "6.92", "76.12", "0.00", "76.12")
    # 2nd: only the 10.00 off: 89.00; tax 8.90; total 97.90
    assert totals(invoices[1]) == ("99.00", "10.00", "8.90", "97.90", "0.00", "97.90")


def test_percent_discount_rounds_half_up_and_never_goes_below_zero() -> None:
    invoices = run(
        {"plan": "starter", "seats": 3, "start": "2026-04-01T00:00:00Z"},
        as_of="2026-04-01T00:00:00Z",
        org={"promotions": [{"percent_off": "12.5"}, {"amount_off": "500"}]},
    )
    # 99 x 12.5% = 12.375 -> 12.38; then 500 off is capped at the 86.62 left: discount 99
    assert totals(invoices[0]) == ("99.00", "99.00", "0.00", "0.00", "0.00", "0.00")


def test_tax_exempt_and_custom_tax_rate() -> None:
    exempt = run(
        {"plan": "starter", "seats": 3, "start": "2026-04-01T00:00:00Z"},
        as_of="2026-04-01T00:00:00Z",
        org={"tax_exempt": True, "tax_rate": "0.20"},
    )
    assert totals(exempt[0]) == ("99.00", "0.00", "0.00", "99.00", "0.00", "99.00")
    eur = run(
        {"plan": "starter", "seats": 4, "start": "2026-04-01T00:00:00Z"},
        as_of="2026-04-01T00:00:00Z",
        org={"currency": "EUR", "tax_rate": "0.19"},
    )
    # 99 x 0.92 = 91.08; 49 x 0.92 = 45.08; 136.16 x 0.19 = 25.8704 -> 25.87
    assert totals(eur[0]) == ("136.16", "0.00", "25.87", "162.03", "0.00", "162.03")


def test_credits_soonest_expiring_first_and_not_on_or_after_expiry() -> None:
    invoices = run(
        {"plan": "starter", "seats": 3, "start": "2026-04-01T00:00:00Z"},
        as_of="2026-06-01T00:00:00Z",
        org={
            "credits": [
                {"amount": "30.00"},
                {"amount": "200.00", "expires_at": "2026-05-01T00:00:00Z"},
                {"amount": "20.00", "expires_at": "2026-06-15T00:00:00Z"},
            ]
        },
    )
    # each invoice: 99 + 9.90 tax = 108.90
    # Apr 1: the May 1 credit first: 108.90 of 200 (91.10 left, but it expires on May 1)
    assert totals(invoices[0])[4:] == ("108.90", "0.00")
    # May 1: expires_at == billing date is no longer usable; Jun 15 credit 20, then no-expiry 30
    assert totals(invoices[1])[4:] == ("50.00", "58.90")
    assert totals(invoices[2])[4:] == ("0.00", "108.90")


def test_jpy_has_no_decimals() -> None:
    invoices = run(
        {"plan": "starter", "seats": 4, "start": "2026-04-01T00:00:00Z"},
        as_of="2026-05-01T00:00:00Z",
        org={"currency": "JPY"},
        usage=[calls("2026-04-10T00:00:00Z", "1001000")],
    )
    # fee 99 x 150 = 14850; seat 49 x 150 = 7350; 22200; tax 2220; total 24420
    assert amounts(invoices[0]) == [("subscription_fee", "14850"), ("seats", "7350")]
    assert invoices[0]["lines"][0]["unit_amount"] == "14850.000000"
    assert totals(invoices[0]) == ("22200", "0", "2220", "24420", "0", "24420")
    # 1 unit x (0.01 x 150 = 1.5) = 1.5 -> 2 yen; 22202; tax 2220.2 -> 2220; total 24422
    assert amounts(invoices[1])[-1] == ("api_calls", "2")
    assert totals(invoices[1]) == ("22202", "0", "2220", "24422", "0", "24422")


def test_brl_price_book() -> None:
    invoices = run(
        {"plan": "professional", "seats": 10, "start": "2026-04-01T00:00:00Z"},
        as_of="2026-05-01T00:00:00Z",
        org={"currency": "BRL", "tax_rate": "0.17"},
        usage=[calls("2026-04-10T00:00:00Z", "1010", metric="transfer")],
    )
    # fee 499 x 5 = 2495.00; transfer 10 GB x (0.50 x 5 = 2.50) = 25.00
    assert amounts(invoices[1]) == [("subscription_fee", "2495.00"), ("transfer", "25.00")]
    # 2520.00 x 0.17 = 428.40
    assert totals(invoices[1]) == ("2520.00", "0.00", "428.40", "2948.40", "0.00", "2948.40")


def test_free_plan_over_quota_bills_no_overage() -> None:
    invoices = run(
        {"plan": "free", "seats": 1, "start": "2026-04-01T00:00:00Z"},
        as_of="2026-05-01T00:00:00Z",
        usage=[calls("2026-04-10T00:00:00Z", "50000")],
    )
    assert amounts(invoices[1]) == [("subscription_fee", "0.00")]
    assert totals(invoices[1]) == ("0.00", "0.00", "0.00", "0.00", "0.00", "0.00")


def test_free_to_starter_mid_period_bills_overage_against_mixed_quota() -> None:
    invoices = run(
        {
            "plan": "free",
            "seats": 1,
            "start": "2026-04-01T00:00:00Z",
            "changes": [{"at": "2026-04-16T00:00:00Z", "plan": "starter"}],
        },
        as_of="2026-05-01T00:00:00Z",
        usage=[calls("2026-04-10T00:00:00Z", "600000")],
    )
    # fraction 15/30; fee pair -(0) = 0.00 and 99 x 0.5 = 49.50; no seat pair (0 extra both)
    # quota 10,000 x 0.5 + 1,000,000 x 0.5 = 505,000; 95 units x 0.01 = 0.95
    assert amounts(invoices[1]) == [
        ("subscription_fee", "99.00"),
        ("proration", "0.00"),
        ("proration", "49.50"),
        ("api_calls", "0.95"),
    ]
    # 149.45; tax 14.945 -> 14.95; total 164.40
    assert totals(invoices[1]) == ("149.45", "0.00", "14.95", "164.40", "0.00", "164.40")


def test_custom_override_ends_at_plan_change() -> None:
    invoices = run(
        {
            "plan": "starter",
            "seats": 3,
            "start": "2026-04-01T00:00:00Z",
            "price_override": "79.00",
            "changes": [{"at": "2026-04-16T00:00:00Z", "plan": "professional"}],
        },
        as_of="2026-05-01T00:00:00Z",
    )
    assert amounts(invoices[0]) == [("subscription_fee", "79.00")]
    # override -> list price: -(79 x 0.5) = -39.50, 499 x 0.5 = 249.50; May at list 499
    assert amounts(invoices[1]) == [
        ("subscription_fee", "499.00"),
        ("proration", "-39.50"),
        ("proration", "249.50"),
    ]


def test_negative_subtotal_becomes_balance_credit_used_next_invoices() -> None:
    invoices = run(
        {
            "plan": "professional",
            "seats": 10,
            "start": "2026-04-01T00:00:00Z",
            "changes": [{"at": "2026-04-02T00:00:00Z", "plan": "starter", "seats": 3}],
        },
        as_of="2026-08-01T00:00:00Z",
    )
    # fraction 29/30: -(499 x 29/30) = -482.366667 -> -482.37; 99 x 29/30 = 95.70
    # May 1: 99 - 482.37 + 95.70 = -287.67 -> total 0, balance credit 287.67
    assert amounts(invoices[1]) == [
        ("subscription_fee", "99.00"),
        ("proration", "-482.37"),
        ("proration", "95.70"),
    ]
    assert totals(invoices[1]) == ("-287.67", "0.00", "0.00", "0.00", "0.00", "0.00")
    # each later invoice 108.90: Jun uses 108.90 (178.77 left), Jul 108.90 (69.87 left),
    # Aug 69.87 -> 39.03 due
    assert totals(invoices[2])[4:] == ("108.90", "0.00")
    assert totals(invoices[3])[4:] == ("108.90", "0.00")
    assert totals(invoices[4])[4:] == ("69.87", "39.03")


def test_gbp_top_api_tier_unit_price_is_rounded_up_to_one_millionth() -> None:
    def api_line(mode: str) -> str:
        invoices = run(
            {
                "plan": "enterprise",
                "seats": 25,
                "start": "2026-04-01T00:00:00Z",
                "pricing_mode": mode,
            },
            as_of="2026-05-01T00:00:00Z",
            org={"currency": "GBP"},
            usage=[calls("2026-04-02T00:00:00Z", "1200000000")],
        )
        return invoices[1]["lines"][1]["amount"]

    # 1.2B - 100M quota = 1,100,000 units, tier 4 (above 1,000,000)
    # volume: 1,100,000 x 0.000001 = 1.10 (not x 0.00000079 = 0.87)
    assert api_line("volume") == "1.10"
    # graduated: 10,000 x 0.0079 = 79 + 90,000 x 0.00395 = 355.50 + 900,000 x 0.00079 = 711
    #   + 100,000 x 0.000001 = 0.10 -> 1145.60
    assert api_line("graduated") == "1145.60"


def test_invoices_sorted_by_subscription_then_date_and_credits_shared_by_org() -> None:
    scenario = {
        "as_of": "2026-06-01T00:00:00Z",
        "organizations": [
            {"id": "acme", "currency": "USD", "credits": [{"amount": "150.00"}]},
        ],
        "subscriptions": [
            {
                "id": "b-later",
                "organization": "acme",
                "plan": "starter",
                "cycle": "monthly",
                "seats": 3,
                "start": "2026-05-01T00:00:00Z",
            },
            {
                "id": "a-first",
                "organization": "acme",
                "plan": "starter",
                "cycle": "monthly",
                "seats": 3,
                "start": "2026-04-01T00:00:00Z",
                "cancel_at": "2026-05-01T00:00:00Z",
            },
        ],
        "usage": [],
    }
    invoices = bill(scenario)["invoices"]
    keys = [(i["subscription"], i["billing_date"][:10]) for i in invoices]
    assert keys == [
        ("a-first", "2026-04-01"),
        ("a-first", "2026-05-01"),
        ("b-later", "2026-05-01"),
        ("b-later", "2026-06-01"),
    ]
    # 150 credit: a-first Apr 1 uses 108.90; a-first May 1 is 0 (arrears only);
    # b-later May 1 uses the 41.10 left -> 67.80 due
    assert invoices[0]["credits_applied"] == "108.90"
    assert totals(invoices[2])[4:] == ("41.10", "67.80")
    assert totals(invoices[3])[4:] == ("0.00", "108.90")
