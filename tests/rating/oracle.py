"""Plain-Python billing oracle for the property test of the dbt rating.

It shares no code with ``dagster_billing``: the catalog below is copied from
docs/rate-card.md (the spec) and every rule is a plain loop over billing dates with
``Decimal`` arithmetic, so when it disagrees with the product only one of the two
can be at fault.  Input is a parsed docs/scenario-format.md scenario; output is the
``billing simulate --json`` shape.

Readings chosen where the spec leaves room (the product team compares against these):

A1  Change timing.  A change takes effect at ``at``.  A change exactly on a fee anchor
    (a monthly plan's billing date, an annual plan's yearly anchor) is already in that
    date's advance lines, so it gets no proration pair.  Any other change is prorated on
    the first billing date after it (or on the immediate-cancellation invoice).  Changes
    at or after ``cancel_at`` are ignored; ``cancel_at <= start`` is rejected.  Changes
    sharing one instant apply in listed order, each with its own pairs.
A2  A "plan change" is a change naming a plan other than the current one; the custom
    ``price_override`` (fee only, never seats) ends at the first one (rule custom price override).
A3  Annual plans: ``cancel_at`` on any monthly billing date is "on a billing date"
    (rule cancellation): that invoice holds only arrears, with no credit for the rest of the term.
A4  Immediate cancellation credit (rule cancellation): one proration line per component whose amount
    in effect is non-zero: ``-(amount x seconds from cancel_at to the fee period end /
    seconds of the fee period)``; the fee period is the term year on annual plans.
A5  Which lines appear: the fee line on every advance invoice, even at 0 (free plan); the
    seats line only with extra seats > 0; an overage line only when the rounded overage
    quantity is > 0 (even if its amount rounds to 0); a proration pair only when that
    component's amount changed, both lines even if one is 0.
A6  Proration lines: ``quantity`` is the fraction to 6 dp and ``unit_amount`` the signed
    full-period amount, for reading only; ``amount`` is the normative value.  All
    ``description`` texts are for reading only.
A7  Free plan (rule free plan): "free for the whole usage period" means on free at every instant
    of [period start, end), end = ``cancel_at`` for an immediate cancellation.  Otherwise
    usage is compared with the time-prorated mixed quota and priced with the usual tiers.
A8  Usage rows are keyed by hour start; a row counts in [a, b) when a <= hour < b.  The
    hours of a period are its seconds / 3600.  Rows repeating an (org, metric, hour)
    are summed.  Usage outside a subscription's periods is not billed.
A9  Promotions belong to the organization and apply to each of its subscriptions;
    ``duration_periods`` counts every invoice of that subscription, including an annual
    plan's overage-only monthly invoices and the final cancellation invoice.  Nothing is
    discounted on a subtotal <= 0.  ``amount_off`` is rounded to the minor unit and, like
    a percent discount, capped at what is left of the subtotal.
A10 Credits belong to the organization (shared by its subscriptions) and exist before its
    first invoice.  Invoices use them in (billing_date, subscription id) order.  The
    balance credit from a negative subtotal is ``-subtotal``, granted after the listed
    credits, usable by any later-processed invoice.  Credit amounts are rounded to the
    minor unit.
A11 Taxable subtotal = max(0, subtotal - discount); total = taxable + tax.  A negative
    subtotal gives discount 0, tax 0, total 0 (rule negative subtotal).
A12 Line order: fee, seats, proration (per change: fee pair, then seats pair; the
    cancellation credits last), then overage as api_calls, storage, transfer,
    query_processing.
A13 An invoice with arrears but no line at all (a zero invoice) gets one ``usage`` line
    per metric at amount 0: quantity = the period's usage in billing units (storage: the
    average), to 6 dp.
"""

from __future__ import annotations

import calendar
import itertools
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Context, Decimal, localcontext
from typing import Any

# ---- Catalog, copied from docs/rate-card.md "Plans" and "Overage" (USD) -----------------

PLANS: dict[str, dict[str, Any]] = {
    "free": {
        "name": "Free",
        "monthly": "0",
        "annual": "0",
        "included_seats": 1,
        "seat_price": None,
        "quotas": {"api_calls": "10000", "storage": "1", "transfer": "1", "query_processing": "10"},
    },
    "starter": {
        "name": "Starter",
        "monthly": "99",
        "annual": "990",
        "included_seats": 3,
        "seat_price": "49",
        "quotas": {
            "api_calls": "1000000",
            "storage": "50",
            "transfer": "100",
            "query_processing": "1000",
        },
    },
    "professional": {
        "name": "Professional",
        "monthly": "499",
        "annual": "4990",
        "included_seats": 10,
        "seat_price": "99",
        "quotas": {
            "api_calls": "10000000",
            "storage": "500",
            "transfer": "1000",
            "query_processing": "10000",
        },
    },
    "enterprise": {
        "name": "Enterprise",
        "monthly": "2499",
        "annual": "24990",
        "included_seats": 25,
        "seat_price": "199",
        "quotas": {
            "api_calls": "100000000",
            "storage": "5000",
            "transfer": "10000",
            "query_processing": "100000",
        },
    },
}

METRICS = ("api_calls", "storage", "transfer", "query_processing")
METRIC_NAMES = {
    "api_calls": "API calls",
    "storage": "Storage",
    "transfer": "Data transfer",
    "query_processing": "Query processing",
}
UNIT_SIZE = {"api_calls": 1000, "storage": 1, "transfer": 1, "query_processing": 1}

# (inclusive upper bound in billing units or None, USD unit price); api_calls unit = 1,000 calls
TIERS: dict[str, list[tuple[str | None, str]]] = {
    "api_calls": [
        ("10000", "0.010000"),
        ("100000", "0.005000"),
        ("1000000", "0.001000"),
        (None, "0.000001"),
    ],
    "storage": [("1000", "0.50"), ("10000", "0.25"), (None, "0.10")],
    "transfer": [("1000", "0.50"), ("10000", "0.25"), (None, "0.10")],
    "query_processing": [(None, "0.005")],
}

# price-book factor from USD and decimals of the minor unit
CURRENCIES: dict[str, tuple[str, int]] = {
    "USD": ("1", 2),
    "EUR": ("0.92", 2),
    "GBP": ("0.79", 2),
    "JPY": ("150", 0),
    "BRL": ("5.0", 2),
}

DEFAULT_TAX_RATE = Decimal("0.10")
SIX = Decimal("0.000001")
# Wide enough that prorated quotas and averages are exact before the single 6-dp rounding.
_CONTEXT = Context(prec=60, rounding=ROUND_HALF_UP)


# ---- Small helpers -------------------------------------------------------------------


def dec(value: Any) -> Decimal:
    """Scenario numbers may be str, int or float; going through str never adds float noise."""
    return Decimal(str(value))


def round6(value: Decimal) -> Decimal:
    """Rule six decimals: 6 decimals, half away from zero."""
    return value.quantize(SIX, rounding=ROUND_HALF_UP)


def round_minor(value: Decimal, currency: str) -> Decimal:
    """Invoice arithmetic, line rounding / rule half up: minor unit, half away from zero, no -0."""
    places = CURRENCIES[currency][1]
    rounded = value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
    return rounded.copy_abs() if rounded == 0 else rounded


def price(usd: str, currency: str) -> Decimal:
    """Price book row: USD amount x currency factor, rounded half up to 6 decimals."""
    return round6(dec(usd) * dec(CURRENCIES[currency][0]))


def parse_ts(value: Any) -> datetime:
    """YAML gives aware datetimes for unquoted timestamps, strings when quoted; both are UTC."""
    if isinstance(value, datetime):
        ts = value
    else:
        ts = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%SZ")


def seconds(start: datetime, end: datetime) -> int:
    """Proration is by seconds (docs/rate-card.md "Billing periods and proration")."""
    return (end - start) // timedelta(seconds=1)


def add_months(anchor: datetime, months: int) -> datetime:
    """Month-end anchors fall back to the month's last day and return afterwards (Jan 31 ->
    Feb 28/29 -> Mar 31 -> Apr 30): always computed from the anchor, never chained."""
    year, month0 = divmod(anchor.month - 1 + months, 12)
    day = min(anchor.day, calendar.monthrange(anchor.year + year, month0 + 1)[1])
    return anchor.replace(year=anchor.year + year, month=month0 + 1, day=day)


def fmt_qty(value: Decimal) -> str:
    """Quantities print without padding zeros, e.g. "2456.789" (docs/scenario-format.md example)."""
    return format(value.normalize(), "f")


# ---- Subscription state ----------------------------------------------------------------


@dataclass
class Line:
    kind: str
    description: str
    amount: Decimal
    quantity: str | None = None
    unit_amount: Decimal | None = None
    metric: str | None = None

    def to_json(self, currency: str) -> dict[str, str]:
        out = {"kind": self.kind, "description": self.description}
        if self.metric is not None:
            out["metric"] = self.metric
        if self.quantity is not None:
            out["quantity"] = self.quantity
        if self.unit_amount is not None:
            unit = round6(self.unit_amount)
            out["unit_amount"] = format(unit.copy_abs() if unit == 0 else unit, "f")  # no -0
        out["amount"] = format(round_minor(self.amount, currency), "f")
        return out


@dataclass(frozen=True)
class State:
    plan: str
    seats: int
    override_active: bool


@dataclass
class Subscription:
    id: str
    org: str
    currency: str
    cycle: str
    start: datetime
    initial: State
    override: Decimal | None
    mode: str
    changes: list[tuple[datetime, str | None, int | None]]
    cancel_at: datetime | None

    @classmethod
    def parse(cls, raw: dict[str, Any], currency: str) -> Subscription:
        start = parse_ts(raw["start"])
        cancel_at = parse_ts(raw["cancel_at"]) if raw.get("cancel_at") is not None else None
        if cancel_at is not None and cancel_at <= start:
            raise ValueError(f"subscriptions[{raw['id']}].cancel_at: must be after start")
        changes = []
        for change in raw.get("changes") or []:
            at = parse_ts(change["at"])
            if cancel_at is not None and at >= cancel_at:
                continue  # A1: the subscription is over by then
            seats = int(change["seats"]) if change.get("seats") is not None else None
            changes.append((at, change.get("plan"), seats))
        changes.sort(key=lambda c: c[0])
        override = raw.get("price_override")
        return cls(
            id=str(raw["id"]),
            org=str(raw["organization"]),
            currency=currency,
            cycle=raw.get("cycle") or "monthly",
            start=start,
            initial=State(raw["plan"], int(raw["seats"]), override is not None),
            override=dec(override) if override is not None else None,
            mode=raw.get("pricing_mode") or "graduated",
            changes=changes,
            cancel_at=cancel_at,
        )

    @property
    def annual(self) -> bool:
        return self.cycle == "annual"

    def state_after(self, n: int) -> State:
        """State once the first ``n`` changes applied (A2: a new plan ends the override)."""
        state = self.initial
        for _, plan, seats in self.changes[:n]:
            if plan is not None and plan != state.plan:
                state = State(plan, state.seats, False)
            if seats is not None:
                state = State(state.plan, seats, state.override_active)
        return state

    def state_at(self, t: datetime) -> State:
        return self.state_after(sum(1 for at, _, _ in self.changes if at <= t))

    def billing_date(self, k: int) -> datetime:
        return add_months(self.start, k)

    def fee_period(self, t: datetime) -> tuple[datetime, datetime]:
        """The period a fee pays for: one month, or the term year on annual plans
        (rule proration pairs)."""
        step = 12 if self.annual else 1
        k = 0
        while self.billing_date((k + 1) * step) <= t:
            k += 1
        return self.billing_date(k * step), self.billing_date((k + 1) * step)

    def fee(self, state: State) -> Decimal:
        """Fee: plan price for the cycle, or the custom override (rule custom price override)."""
        if state.override_active and self.override is not None:
            return self.override
        return price(PLANS[state.plan]["annual" if self.annual else "monthly"], self.currency)

    def extra_seats(self, state: State) -> int:
        return max(0, state.seats - PLANS[state.plan]["included_seats"])

    def seat_unit(self, state: State) -> Decimal:
        """Annual plans pay extra seats upfront: 12 x the monthly seat price."""
        usd = PLANS[state.plan]["seat_price"]
        if usd is None:
            return Decimal(0)
        return price(usd, self.currency) * (12 if self.annual else 1)

    def seat_amount(self, state: State) -> Decimal:
        """Extra seats: (seats - included) x seat price, never negative."""
        return self.extra_seats(state) * self.seat_unit(state)

    def plan_label(self, state: State) -> str:
        return f"{PLANS[state.plan]['name']} ({self.cycle})"


# ---- Lines ------------------------------------------------------------------------------


def advance_lines(sub: Subscription, at: datetime) -> list[Line]:
    """In-advance fee and extra seats for the period starting ``at`` (fee, extra seats)."""
    state = sub.state_at(at)
    fee = sub.fee(state)
    lines = [Line("subscription_fee", sub.plan_label(state), fee, "1", fee)]
    extra = sub.extra_seats(state)
    if extra > 0:
        unit = sub.seat_unit(state)
        lines.append(Line("seats", "Extra seats", extra * unit, str(extra), unit))
    return lines


def _proration(description: str, full: Decimal, fraction: Decimal, sign: int) -> Line:
    """Six decimals, proration pairs: amount x fraction rounded to 6 dp (sign after, so half
    away from zero)."""
    amount = sign * round6(full * fraction)
    return Line("proration", description, amount, format(round6(fraction), "f"), sign * full)


def proration_lines(sub: Subscription, start: datetime, end: datetime) -> list[Line]:
    """Proration pairs: a credit/charge pair per changed component for changes in [start, end)."""
    lines = []
    for i, (at, _, _) in enumerate(sub.changes):
        if not start <= at < end:
            continue
        p0, p1 = sub.fee_period(at)
        if at == p0:
            continue  # A1: already billed in advance at the new price
        fraction = Decimal(seconds(at, p1)) / Decimal(seconds(p0, p1))
        old, new = sub.state_after(i), sub.state_after(i + 1)
        if sub.fee(old) != sub.fee(new):
            lines.append(
                _proration(f"Unused time on {sub.plan_label(old)}", sub.fee(old), fraction, -1)
            )
            lines.append(
                _proration(f"Remaining time on {sub.plan_label(new)}", sub.fee(new), fraction, 1)
            )
        if sub.seat_amount(old) != sub.seat_amount(new):
            lines.append(
                _proration("Unused time on extra seats", sub.seat_amount(old), fraction, -1)
            )
            lines.append(
                _proration("Remaining time on extra seats", sub.seat_amount(new), fraction, 1)
            )
    return lines


def cancellation_lines(sub: Subscription, cancel_at: datetime) -> list[Line]:
    """Cancellation / A4: an immediate cancellation credits the unused fee and seats."""
    p0, p1 = sub.fee_period(cancel_at)
    fraction = Decimal(seconds(cancel_at, p1)) / Decimal(seconds(p0, p1))
    state = sub.state_at(cancel_at)
    lines = []
    if sub.fee(state) != 0:
        lines.append(
            _proration(f"Unused time on {sub.plan_label(state)}", sub.fee(state), fraction, -1)
        )
    if sub.seat_amount(state) != 0:
        lines.append(_proration("Unused time on extra seats", sub.seat_amount(state), fraction, -1))
    return lines


def plan_segments(sub: Subscription, start: datetime, end: datetime) -> list[tuple[str, int]]:
    """(plan, seconds active) over [start, end): the basis of prorated quotas
    (rule full monthly quota)."""
    cuts = [start] + [at for at, _, _ in sub.changes if start < at < end] + [end]
    return [(sub.state_at(a).plan, seconds(a, b)) for a, b in itertools.pairwise(cuts)]


def tier_amount(quantity: Decimal, metric: str, mode: str, currency: str) -> Decimal:
    """Graduated: each slice at its tier; volume: all at the tier the total falls in.
    Upper bounds are inclusive (rule inclusive tier bounds); each slice amount is rounded to
    6 dp (rule six decimals)."""
    tiers = [(dec(up) if up is not None else None, price(p, currency)) for up, p in TIERS[metric]]
    if mode == "volume":
        for up_to, unit in tiers:
            if up_to is None or quantity <= up_to:
                return round6(quantity * unit)
    total, lower = Decimal(0), Decimal(0)
    for up_to, unit in tiers:
        if quantity <= lower:
            break
        top = quantity if up_to is None else min(quantity, up_to)
        total += round6((top - lower) * unit)
        if up_to is None:
            break
        lower = up_to
    return total


def period_usage(
    sub: Subscription,
    usage: dict[tuple[str, str], dict[datetime, Decimal]],
    metric: str,
    start: datetime,
    end: datetime,
    period_seconds: Decimal,
) -> Decimal:
    """Usage in [start, end) in raw units; storage as GB-month, the average over all the
    hours of the whole period."""
    rows = usage.get((sub.org, metric), {})
    used = sum((q for hour, q in rows.items() if start <= hour < end), Decimal(0))
    return used / (period_seconds / 3600) if metric == "storage" else used


def overage_lines(
    sub: Subscription,
    usage: dict[tuple[str, str], dict[datetime, Decimal]],
    start: datetime,
    period_end: datetime,
    end: datetime,
) -> list[Line]:
    """Overage for usage in [start, end) of the billing period [start, period_end).

    ``end`` < ``period_end`` only for an immediate cancellation; quotas and the storage
    average are then still divided by the whole period (rules full monthly quota, cancellation)."""
    segments = plan_segments(sub, start, end)
    if all(plan == "free" for plan, _ in segments):
        return []  # rule free plan
    period_seconds = Decimal(seconds(start, period_end))
    lines = []
    for metric in METRICS:
        quota = sum(
            (dec(PLANS[plan]["quotas"][metric]) * secs / period_seconds for plan, secs in segments),
            Decimal(0),
        )
        used = period_usage(sub, usage, metric, start, end, period_seconds)
        quantity = round6((used - quota) / UNIT_SIZE[metric])
        if quantity <= 0:
            continue
        amount = tier_amount(quantity, metric, sub.mode, sub.currency)
        description = f"{METRIC_NAMES[metric]} overage"
        lines.append(Line("overage", description, amount, fmt_qty(quantity), metric=metric))
    return lines


def usage_lines(
    sub: Subscription,
    usage: dict[tuple[str, str], dict[datetime, Decimal]],
    start: datetime,
    period_end: datetime,
    end: datetime,
) -> list[Line]:
    """A13: an invoice with arrears and no other line shows, per metric, the usage of
    [start, end) in billing units (6 dp) at zero amount, so a zero invoice says why."""
    period_seconds = Decimal(seconds(start, period_end))
    lines = []
    for metric in METRICS:
        used = period_usage(sub, usage, metric, start, end, period_seconds)
        quantity = round6(used / UNIT_SIZE[metric])
        lines.append(
            Line(
                "usage",
                f"{METRIC_NAMES[metric]} usage",
                Decimal(0),
                fmt_qty(quantity),
                metric=metric,
            )
        )
    return lines


# ---- Invoices -----------------------------------------------------------------------------


@dataclass
class Invoice:
    subscription: str
    organization: str
    billing_date: datetime
    currency: str
    lines: list[Line]
    subtotal: Decimal = Decimal(0)
    discount: Decimal = Decimal(0)
    tax: Decimal = Decimal(0)
    total: Decimal = Decimal(0)
    credits_applied: Decimal = Decimal(0)
    amount_due: Decimal = Decimal(0)

    def to_json(self) -> dict[str, Any]:
        def money(value: Decimal) -> str:
            return format(round_minor(value, self.currency), "f")

        return {
            "subscription": self.subscription,
            "organization": self.organization,
            "billing_date": iso(self.billing_date),
            "currency": self.currency,
            "lines": [line.to_json(self.currency) for line in self.lines],
            "subtotal": money(self.subtotal),
            "discount": money(self.discount),
            "tax": money(self.tax),
            "total": money(self.total),
            "credits_applied": money(self.credits_applied),
            "amount_due": money(self.amount_due),
        }


def make_invoice(
    sub: Subscription, org: dict[str, Any], at: datetime, lines: list[Line], number: int
) -> Invoice:
    """Line rounding, discounts, tax; rules promotions in order, negative subtotal (credits
    come later)."""
    cur = sub.currency
    invoice = Invoice(sub.id, sub.org, at, cur, lines)
    invoice.subtotal = sum((round_minor(line.amount, cur) for line in lines), Decimal(0))
    if invoice.subtotal <= 0:
        return invoice  # rule negative subtotal / A9 / A11: nothing to discount or tax
    left = invoice.subtotal
    for promo in org.get("promotions") or []:
        duration = promo.get("duration_periods")
        if duration is not None and number > int(duration):
            continue
        if promo.get("percent_off") is not None:
            off = round_minor(left * dec(promo["percent_off"]) / 100, cur)
        else:
            off = round_minor(dec(promo["amount_off"]), cur)
        left -= min(off, left)
    invoice.discount = invoice.subtotal - left
    if not org.get("tax_exempt"):
        rate = dec(org["tax_rate"]) if org.get("tax_rate") is not None else DEFAULT_TAX_RATE
        invoice.tax = round_minor(left * rate, cur)
    invoice.total = left + invoice.tax
    return invoice


def subscription_invoices(
    sub: Subscription,
    org: dict[str, Any],
    usage: dict[tuple[str, str], dict[datetime, Decimal]],
    as_of: datetime,
) -> list[Invoice]:
    """One invoice per billing date <= as_of ("When an invoice is issued", rule cancellation)."""
    invoices: list[Invoice] = []
    k = 0
    while (date := sub.billing_date(k)) <= as_of:
        next_date = sub.billing_date(k + 1)
        lines: list[Line] = []
        ends_here = sub.cancel_at == date
        if not ends_here and (not sub.annual or k % 12 == 0):
            lines += advance_lines(sub, date)
        if k > 0:  # the first invoice holds only advance lines
            previous = sub.billing_date(k - 1)
            lines += proration_lines(sub, previous, date)
            lines += overage_lines(sub, usage, previous, date, date)
            lines = lines or usage_lines(sub, usage, previous, date, date)
        invoices.append(make_invoice(sub, org, date, lines, len(invoices) + 1))
        if ends_here:
            break  # cancelled at period end: nothing follows
        cancel_at = sub.cancel_at
        if cancel_at is not None and date < cancel_at < next_date:
            if cancel_at <= as_of:
                lines = proration_lines(sub, date, cancel_at)
                lines += cancellation_lines(sub, cancel_at)
                lines += overage_lines(sub, usage, date, next_date, cancel_at)
                lines = lines or usage_lines(sub, usage, date, next_date, cancel_at)
                invoices.append(make_invoice(sub, org, cancel_at, lines, len(invoices) + 1))
            break
        k += 1
    return invoices


@dataclass
class Credit:
    remaining: Decimal
    expires_at: datetime | None = None


def apply_credits(invoices: list[Invoice], orgs: dict[str, dict[str, Any]]) -> None:
    """Credits; rules negative subtotal, credit order: soonest-expiring first, no-expiry
    last, ties by grant order."""
    balances: dict[str, list[Credit]] = {}
    for org_id, org in orgs.items():
        balances[org_id] = [
            Credit(
                round_minor(dec(c["amount"]), org["currency"]),
                parse_ts(c["expires_at"]) if c.get("expires_at") is not None else None,
            )
            for c in org.get("credits") or []
        ]
    for invoice in sorted(invoices, key=lambda i: (i.billing_date, i.subscription)):
        credits = balances[invoice.organization]
        usable = [c for c in credits if c.expires_at is None or c.expires_at > invoice.billing_date]
        # sorted() is stable, so equal expiries keep their grant order
        usable.sort(key=lambda c: (c.expires_at is None, c.expires_at or invoice.billing_date))
        due = invoice.total
        for credit in usable:
            used = min(credit.remaining, due)
            credit.remaining -= used
            due -= used
        invoice.credits_applied = invoice.total - due
        invoice.amount_due = due
        if invoice.subtotal < 0:
            credits.append(Credit(-invoice.subtotal))


def expand_usage(rows: list[dict[str, Any]]) -> dict[tuple[str, str], dict[datetime, Decimal]]:
    """(org, metric) -> hour -> quantity; a from/to row repeats per_hour for each hour."""
    usage: dict[tuple[str, str], dict[datetime, Decimal]] = defaultdict(
        lambda: defaultdict(Decimal)
    )
    for row in rows:
        series = usage[(str(row["organization"]), row["metric"])]
        if row.get("hour") is not None:
            series[parse_ts(row["hour"])] += dec(row["quantity"])
        else:
            hour, end = parse_ts(row["from"]), parse_ts(row["to"])
            while hour < end:
                series[hour] += dec(row["per_hour"])
                hour += timedelta(hours=1)
    return usage


def bill(scenario: dict[str, Any]) -> dict[str, Any]:
    """Every invoice of the scenario, as ``billing simulate --json`` prints it."""
    with localcontext(_CONTEXT):
        as_of = parse_ts(scenario["as_of"])
        orgs = {str(o["id"]): o for o in scenario.get("organizations") or []}
        usage = expand_usage(scenario.get("usage") or [])
        invoices: list[Invoice] = []
        for raw in scenario.get("subscriptions") or []:
            org = orgs[str(raw["organization"])]
            sub = Subscription.parse(raw, org["currency"])
            invoices += subscription_invoices(sub, org, usage, as_of)
        apply_credits(invoices, orgs)
        invoices.sort(key=lambda i: (i.subscription, i.billing_date))
        return {"invoices": [invoice.to_json() for invoice in invoices]}
