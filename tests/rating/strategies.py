"""Hypothesis strategies for valid docs/scenario-format.md scenarios.

A dbt run costs seconds, so one scenario carries several organizations and the
property test runs the product once per scenario.  Every scenario avoids the
"bad scenario" list (unknown names, negative quantities, changes before start, extra
seats on free, overlapping subscriptions of one organization).  It also stays clear of
corners the rate card does not settle: changes fall strictly inside periods (never on
a billing date), cancellations strictly inside a period or exactly on a billing date,
and usage rows sit on whole hours inside the subscription's life, never repeating an hour.
"""

from __future__ import annotations

import calendar
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from hypothesis import strategies as st

from tests.rating.oracle import add_months, iso

PLAN_IDS = ("free", "starter", "professional", "enterprise")
INCLUDED_SEATS = {"free": 1, "starter": 3, "professional": 10, "enterprise": 25}
CURRENCY_CODES = ("USD", "EUR", "GBP", "JPY", "BRL")
METRIC_IDS = ("api_calls", "storage", "transfer", "query_processing")
# anchors 29-31 are what month-end fallback bugs are made of, so draw them often
ANCHOR_DAYS = (1, 2, 10, 15, 28, 29, 29, 30, 30, 31, 31, 31)
HOUR = timedelta(hours=1)


def _hours(start: datetime, end: datetime) -> int:
    return (end - start) // HOUR


def _money(draw: st.DrawFn, currency: str, max_major: int) -> str:
    """An amount in the currency's minor units (JPY has none)."""
    if currency == "JPY":
        return str(draw(st.integers(0, max_major * 150)))
    cents = draw(st.integers(0, max_major * 100))
    return str(Decimal(cents) / 100)


def _decimal(draw: st.DrawFn, max_units: int, scales: tuple[str, ...]) -> Decimal:
    """Non-negative quantity with up to a few decimals, spread over several magnitudes."""
    return draw(st.integers(0, max_units)) * Decimal(draw(st.sampled_from(scales)))


def _quantity(draw: st.DrawFn, metric: str) -> str:
    scales = {
        "api_calls": ("0.001", "1", "10", "100", "1000"),  # up to 1B calls per row
        "storage": ("0.001", "0.01", "1"),
        "transfer": ("0.001", "0.01", "0.1"),
        "query_processing": ("0.001", "0.1", "1"),
    }[metric]
    return str(_decimal(draw, 1_000_000, scales))


def _start(draw: st.DrawFn, earliest: datetime) -> datetime:
    """A start at a whole hour on or after ``earliest``, often on day 29, 30 or 31."""
    month = add_months(earliest.replace(day=1, hour=0), draw(st.integers(0, 1)))
    last_day = calendar.monthrange(month.year, month.month)[1]
    day = min(draw(st.sampled_from(ANCHOR_DAYS)), last_day)
    hour = draw(st.sampled_from((0, 0, 0, 9, 23)))
    return max(month.replace(day=day, hour=hour), earliest)


def _inside(draw: st.DrawFn, start: datetime, end: datetime, unit: timedelta) -> datetime:
    """A time strictly inside (start, end), a whole number of ``unit`` after start."""
    steps = (end - start) // unit
    return start + draw(st.integers(1, steps - 1)) * unit


@st.composite
def subscriptions(
    draw: st.DrawFn, sub_id: str, org_id: str, currency: str, start: datetime, as_of: datetime
) -> dict[str, Any]:
    """One valid subscription: plan, cycle, seats, optional changes, override and cancel."""
    plan = draw(st.sampled_from(PLAN_IDS))
    cycle = draw(st.sampled_from(("monthly", "monthly", "annual")))
    seats = 1 if plan == "free" else draw(st.integers(1, INCLUDED_SEATS[plan] + 6))
    sub: dict[str, Any] = {
        "id": sub_id,
        "organization": org_id,
        "plan": plan,
        "cycle": cycle,
        "seats": seats,
        "start": iso(start),
    }
    if draw(st.booleans()):
        sub["pricing_mode"] = draw(st.sampled_from(("graduated", "volume")))
    if draw(st.integers(0, 4)) == 0:
        sub["price_override"] = _money(draw, currency, 3000 if cycle == "monthly" else 30000)

    # monthly billing dates (annual plans bill usage monthly too) reaching past as_of
    dates = [start]
    while dates[-1] <= as_of:
        dates.append(add_months(start, len(dates)))

    # changes strictly inside monthly periods, at whole minutes, in increasing order
    changes: list[dict[str, Any]] = []
    last = start
    for k in sorted(draw(st.lists(st.integers(0, len(dates) - 2), max_size=2, unique=True))):
        at = _inside(draw, dates[k], dates[k + 1], timedelta(minutes=1))
        change: dict[str, Any] = {"at": iso(at)}
        if plan == "free" or draw(st.booleans()):
            plan = draw(st.sampled_from([p for p in PLAN_IDS if p != plan]))
            change["plan"] = plan
        if plan == "free":
            if seats != 1:
                seats = change["seats"] = 1  # extra seats are not sold on free
        elif "plan" not in change or draw(st.booleans()):
            choices = [n for n in range(1, INCLUDED_SEATS[plan] + 7) if n != seats]
            seats = change["seats"] = draw(st.sampled_from(choices))
        changes.append(change)
        last = at
    if changes:
        sub["changes"] = changes

    # cancel on a billing date or at a whole hour inside a period, after the last change
    if draw(st.integers(0, 2)) == 0:
        later = [k for k in range(1, len(dates)) if dates[k] > last]
        k = draw(st.sampled_from(later))
        if draw(st.booleans()):
            sub["cancel_at"] = iso(dates[k])
        else:
            lower = max(dates[k - 1], last.replace(minute=0) + HOUR)
            if _hours(lower, dates[k]) >= 2:
                sub["cancel_at"] = iso(_inside(draw, lower, dates[k], HOUR))
            else:
                sub["cancel_at"] = iso(dates[k])
    return sub


def _usage_rows(
    draw: st.DrawFn, org_id: str, start: datetime, end: datetime
) -> list[dict[str, Any]]:
    """Hourly rows in [start, end): a few single hours per metric, maybe one from/to range."""
    total = _hours(start, end)
    if total <= 0:
        return []
    rows: list[dict[str, Any]] = []
    for metric in METRIC_IDS:
        taken: set[int] = set()
        if draw(st.integers(0, 2 if metric == "storage" else 5)) == 0:
            a = draw(st.integers(0, total - 1))
            b = draw(st.integers(a + 1, total))
            taken.update(range(a, b))
            per_hour = _decimal(draw, 2_000_000, ("0.01",) if metric == "storage" else ("0.001",))
            rows.append(
                {
                    "organization": org_id,
                    "metric": metric,
                    "from": iso(start + a * HOUR),
                    "to": iso(start + b * HOUR),
                    "per_hour": str(per_hour),
                }
            )
        for h in draw(st.lists(st.integers(0, total - 1), max_size=4, unique=True)):
            if h in taken:
                continue
            rows.append(
                {
                    "organization": org_id,
                    "metric": metric,
                    "hour": iso(start + h * HOUR),
                    "quantity": _quantity(draw, metric),
                }
            )
    return rows


@st.composite
def organizations(
    draw: st.DrawFn, org_id: str, epoch: datetime, as_of: datetime
) -> tuple[dict[str, Any], list[dict[str, Any]], list[dict[str, Any]]]:
    """An organization, its one or two back-to-back subscriptions and their usage."""
    currency = draw(st.sampled_from(CURRENCY_CODES))
    org: dict[str, Any] = {"id": org_id, "name": f"Org {org_id}", "currency": currency}
    if draw(st.booleans()):
        org["tax_rate"] = str(Decimal(draw(st.integers(0, 2500))) / 10000)
    if draw(st.integers(0, 4)) == 0:
        org["tax_exempt"] = True
    promotions = []
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.booleans()):
            promo: dict[str, Any] = {"percent_off": str(Decimal(draw(st.integers(1, 1000))) / 10)}
        else:
            promo = {"amount_off": _money(draw, currency, 200)}
        if draw(st.booleans()):
            promo["duration_periods"] = draw(st.integers(1, 3))
        promotions.append(promo)
    if promotions:
        org["promotions"] = promotions
    credits = []
    for _ in range(draw(st.integers(0, 2))):
        credit: dict[str, Any] = {"amount": _money(draw, currency, 500)}
        if draw(st.booleans()):
            credit["expires_at"] = iso(
                epoch + draw(st.integers(1, _hours(epoch, as_of) + 24)) * HOUR
            )
        credits.append(credit)
    if credits:
        org["credits"] = credits

    subs: list[dict[str, Any]] = []
    usage: list[dict[str, Any]] = []
    start = _start(draw, epoch)
    while start < as_of and len(subs) < 2:
        sub = draw(subscriptions(f"{org_id}-sub-{len(subs) + 1}", org_id, currency, start, as_of))
        subs.append(sub)
        end = datetime.fromisoformat(sub.get("cancel_at", iso(as_of)).replace("Z", "+00:00"))
        usage += _usage_rows(draw, org_id, start, min(end, as_of))
        if "cancel_at" not in sub or not draw(st.booleans()):
            break
        # the next subscription starts when (or a few days after) this one ends: no overlap
        start = end + timedelta(days=draw(st.sampled_from((0, 0, 3, 17))))
    return org, subs, usage


@st.composite
def scenarios(draw: st.DrawFn, max_organizations: int = 4) -> dict[str, Any]:
    """A whole scenario: several organizations, ``as_of`` a few months after the starts."""
    epoch = datetime(draw(st.integers(2024, 2028)), draw(st.integers(1, 12)), 1, tzinfo=UTC)
    months = draw(st.sampled_from((1, 2, 3, 4, 5, 6, 13)))  # 13: an annual plan's 2nd year
    as_of = add_months(epoch, months) + draw(st.integers(0, 27 * 24)) * HOUR
    scenario: dict[str, Any] = {
        "as_of": iso(as_of),
        "organizations": [],
        "subscriptions": [],
        "usage": [],
    }
    for i in range(draw(st.integers(1, max_organizations))):
        org, subs, usage = draw(organizations(f"org-{i + 1}", epoch, as_of))
        scenario["organizations"].append(org)
        scenario["subscriptions"] += subs
        scenario["usage"] += usage
    return scenario
