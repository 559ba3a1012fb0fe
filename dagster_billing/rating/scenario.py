"""Parse and validate a `billing simulate` scenario (docs/scenario-format.md).

Every rule that can be checked before touching the database is checked here, and each
failure names the field: `subscriptions[1].changes[0].at: before the subscription's
start 2026-04-01T00:00:00Z`. Catalog names (plans, metrics, currencies) are checked
against the catalog the warehouse holds, which the caller passes in.
"""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

HOUR = timedelta(hours=1)


class ScenarioError(ValueError):
    """A scenario the platform cannot bill; the message names the field."""


@dataclass(frozen=True)
class Catalog:
    """The names a scenario may use, read from the warehouse catalog."""

    plans: frozenset[str]
    metrics: frozenset[str]
    currencies: frozenset[str]
    plans_selling_seats: frozenset[str]
    included_seats: dict[str, int]


@dataclass
class Organization:
    id: str
    name: str
    currency: str
    tax_rate: Decimal | None
    tax_exempt: bool
    credits: list[tuple[Decimal, datetime | None]]
    promotions: list[tuple[Decimal | None, Decimal | None, int | None]]


@dataclass
class Change:
    at: datetime
    plan: str | None
    seats: int | None


@dataclass
class Subscription:
    id: str
    organization: str
    plan: str
    cycle: str
    seats: int
    start: datetime
    pricing_mode: str
    price_override: Decimal | None
    changes: list[Change]
    cancel_at: datetime | None


@dataclass
class Scenario:
    as_of: datetime
    organizations: list[Organization]
    subscriptions: list[Subscription]
    # (organization, metric, hour) -> quantity; repeated hours are summed
    usage: dict[tuple[str, str, datetime], Decimal] = field(default_factory=dict)


def _timestamp(value: Any, where: str) -> datetime:
    """YAML gives datetimes for unquoted timestamps and strings for quoted ones."""
    if isinstance(value, datetime):
        ts = value
    elif isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ScenarioError(f"{where}: not an ISO-8601 timestamp: {value!r}") from None
    elif isinstance(value, date):
        ts = datetime(value.year, value.month, value.day)
    else:
        raise ScenarioError(f"{where}: not an ISO-8601 timestamp: {value!r}")
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts.astimezone(UTC)


def _decimal(value: Any, where: str, minimum: Decimal = Decimal(0)) -> Decimal:
    """Numbers go through str, so a YAML float never adds binary noise."""
    if isinstance(value, bool) or value is None:
        raise ScenarioError(f"{where}: not a number: {value!r}")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise ScenarioError(f"{where}: not a number: {value!r}") from None
    if not number.is_finite():
        raise ScenarioError(f"{where}: not a finite number: {value!r}")
    if number < minimum:
        raise ScenarioError(f"{where}: must be >= {minimum}, got {value}")
    return number


def _integer(value: Any, where: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ScenarioError(f"{where}: not a whole number: {value!r}")
    try:
        number = int(value)
    except ValueError:
        raise ScenarioError(f"{where}: not a whole number: {value!r}") from None
    if number < minimum:
        raise ScenarioError(f"{where}: must be >= {minimum}, got {value}")
    return number


def _one_of(value: Any, allowed: frozenset[str] | tuple[str, ...], where: str, what: str) -> str:
    if not isinstance(value, str) or value not in allowed:
        choices = ", ".join(sorted(allowed))
        raise ScenarioError(f"{where}: unknown {what} {value!r} (expected one of: {choices})")
    return value


def _required(raw: dict[str, Any], key: str, where: str) -> Any:
    if raw.get(key) is None:
        raise ScenarioError(f"{where}.{key}: required")
    return raw[key]


def _items(raw: Any, where: str) -> list[dict[str, Any]]:
    if raw is None:
        return []
    if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
        raise ScenarioError(f"{where}: must be a list of mappings")
    return raw


def _organization(raw: dict[str, Any], where: str, catalog: Catalog) -> Organization:
    currency = _required(raw, "currency", where)
    if currency not in catalog.currencies:
        raise ScenarioError(f"{where}.currency: no price book for currency {currency!r}")
    credits = []
    for j, credit in enumerate(_items(raw.get("credits"), f"{where}.credits")):
        at = f"{where}.credits[{j}]"
        expires = credit.get("expires_at")
        credits.append(
            (
                _decimal(_required(credit, "amount", at), f"{at}.amount"),
                _timestamp(expires, f"{at}.expires_at") if expires is not None else None,
            )
        )
    promotions = []
    for j, promo in enumerate(_items(raw.get("promotions"), f"{where}.promotions")):
        at = f"{where}.promotions[{j}]"
        percent, amount = promo.get("percent_off"), promo.get("amount_off")
        if (percent is None) == (amount is None):
            raise ScenarioError(f"{at}: give exactly one of percent_off and amount_off")
        if percent is not None and _decimal(percent, f"{at}.percent_off") > 100:
            raise ScenarioError(f"{at}.percent_off: must be at most 100, got {percent}")
        if amount is not None:
            _decimal(amount, f"{at}.amount_off")
        duration = promo.get("duration_periods")
        promotions.append(
            (
                Decimal(str(percent)) if percent is not None else None,
                Decimal(str(amount)) if amount is not None else None,
                _integer(duration, f"{at}.duration_periods", 1) if duration is not None else None,
            )
        )
    tax_rate = raw.get("tax_rate")
    rate = _decimal(tax_rate, f"{where}.tax_rate") if tax_rate is not None else None
    if rate is not None and rate >= 1:
        raise ScenarioError(f"{where}.tax_rate: must be below 1, got {tax_rate}")
    return Organization(
        id=str(_required(raw, "id", where)),
        name=str(raw.get("name") or raw["id"]),
        currency=currency,
        tax_rate=rate,
        tax_exempt=bool(raw.get("tax_exempt", False)),
        credits=credits,
        promotions=promotions,
    )


def _subscription(
    raw: dict[str, Any], where: str, catalog: Catalog, organizations: set[str]
) -> Subscription:
    organization = str(_required(raw, "organization", where))
    if organization not in organizations:
        raise ScenarioError(f"{where}.organization: unknown organization {organization!r}")
    plan = _one_of(_required(raw, "plan", where), catalog.plans, f"{where}.plan", "plan")
    cycle = _one_of(raw.get("cycle", "monthly"), ("monthly", "annual"), f"{where}.cycle", "cycle")
    mode = raw.get("pricing_mode", "graduated")
    mode = _one_of(mode, ("graduated", "volume"), f"{where}.pricing_mode", "pricing mode")
    start = _timestamp(_required(raw, "start", where), f"{where}.start")
    seats = _integer(_required(raw, "seats", where), f"{where}.seats", 1)
    cancel = raw.get("cancel_at")
    cancel_at = _timestamp(cancel, f"{where}.cancel_at") if cancel is not None else None
    if cancel_at is not None and cancel_at <= start:
        raise ScenarioError(f"{where}.cancel_at: must be after start")
    override = raw.get("price_override")
    changes = []
    for j, change in enumerate(_items(raw.get("changes"), f"{where}.changes")):
        at = f"{where}.changes[{j}]"
        when = _timestamp(_required(change, "at", at), f"{at}.at")
        if when < start:
            raise ScenarioError(f"{at}.at: before the subscription's start {start.isoformat()}")
        new_plan = change.get("plan")
        if new_plan is not None:
            _one_of(new_plan, catalog.plans, f"{at}.plan", "plan")
        new_seats = change.get("seats")
        if new_plan is None and new_seats is None:
            raise ScenarioError(f"{at}: a change needs a plan or seats")
        changes.append(
            Change(
                when,
                new_plan,
                _integer(new_seats, f"{at}.seats", 1) if new_seats is not None else None,
            )
        )
    changes.sort(key=lambda c: c.at)
    for earlier, later in itertools.pairwise(changes):
        if earlier.at == later.at:
            raise ScenarioError(f"{where}.changes: two changes at {later.at.isoformat()}")
    subscription = Subscription(
        id=str(_required(raw, "id", where)),
        organization=organization,
        plan=plan,
        cycle=cycle,
        seats=seats,
        start=start,
        pricing_mode=mode,
        price_override=(
            _decimal(override, f"{where}.price_override") if override is not None else None
        ),
        changes=changes,
        cancel_at=cancel_at,
    )
    _check_seats(subscription, where, catalog)
    return subscription


def _check_seats(subscription: Subscription, where: str, catalog: Catalog) -> None:
    """Rate card, free plan: extra seats on a plan that sells none (free) is invalid, at any
    point."""
    plan, seats = subscription.plan, subscription.seats
    states = [(where, plan, seats)]
    for j, change in enumerate(subscription.changes):
        plan, seats = change.plan or plan, change.seats or seats
        states.append((f"{where}.changes[{j}]", plan, seats))
    for at, plan, seats in states:
        if plan not in catalog.plans_selling_seats and seats > catalog.included_seats[plan]:
            raise ScenarioError(
                f"{at}.seats: plan {plan!r} sells no extra seats"
                f" ({seats} > {catalog.included_seats[plan]} included)"
            )


def _usage(
    rows: list[dict[str, Any]], catalog: Catalog, organizations: set[str]
) -> dict[tuple[str, str, datetime], Decimal]:
    usage: dict[tuple[str, str, datetime], Decimal] = defaultdict(Decimal)
    for i, row in enumerate(rows):
        where = f"usage[{i}]"
        organization = str(_required(row, "organization", where))
        if organization not in organizations:
            raise ScenarioError(f"{where}.organization: unknown organization {organization!r}")
        metric = _one_of(
            _required(row, "metric", where), catalog.metrics, f"{where}.metric", "metric"
        )
        if row.get("hour") is not None:
            hour = _timestamp(row["hour"], f"{where}.hour")
            if hour.minute or hour.second or hour.microsecond:
                raise ScenarioError(f"{where}.hour: not on a whole hour: {row['hour']}")
            quantity = _decimal(_required(row, "quantity", where), f"{where}.quantity")
            usage[(organization, metric, hour)] += quantity
            continue
        start = _timestamp(_required(row, "from", where), f"{where}.from")
        end = _timestamp(_required(row, "to", where), f"{where}.to")
        per_hour = _decimal(_required(row, "per_hour", where), f"{where}.per_hour")
        if start.minute or start.second or start.microsecond:
            raise ScenarioError(f"{where}.from: not on a whole hour: {row['from']}")
        if end <= start:
            raise ScenarioError(f"{where}.to: must be after from")
        hour = start
        while hour < end:
            usage[(organization, metric, hour)] += per_hour
            hour += HOUR
    return dict(usage)


def _check_overlaps(subscriptions: list[Subscription]) -> None:
    """Rate card, one subscription per organization: one at a time."""
    by_org: dict[str, list[tuple[int, Subscription]]] = defaultdict(list)
    for i, sub in enumerate(subscriptions):
        by_org[sub.organization].append((i, sub))
    for entries in by_org.values():
        entries.sort(key=lambda e: e[1].start)
        for (_, first), (j, second) in itertools.pairwise(entries):
            if first.cancel_at is None or first.cancel_at > second.start:
                raise ScenarioError(
                    f"subscriptions[{j}].start: overlaps subscription {first.id!r}"
                    f" of organization {first.organization!r}"
                )


def parse_scenario(raw: Any, catalog: Catalog) -> Scenario:
    """A validated scenario, or ScenarioError naming the first bad field."""
    if not isinstance(raw, dict):
        raise ScenarioError("scenario: must be a mapping with as_of, organizations, ...")
    as_of = _timestamp(_required(raw, "as_of", "scenario"), "as_of")
    organizations = [
        _organization(org, f"organizations[{i}]", catalog)
        for i, org in enumerate(_items(raw.get("organizations"), "organizations"))
    ]
    names = [org.id for org in organizations]
    if len(set(names)) != len(names):
        raise ScenarioError("organizations: ids must be unique")
    known = set(names)
    subscriptions = [
        _subscription(sub, f"subscriptions[{i}]", catalog, known)
        for i, sub in enumerate(_items(raw.get("subscriptions"), "subscriptions"))
    ]
    if len({sub.id for sub in subscriptions}) != len(subscriptions):
        raise ScenarioError("subscriptions: ids must be unique")
    _check_overlaps(subscriptions)
    usage = _usage(_items(raw.get("usage"), "usage"), catalog, known)
    return Scenario(as_of, organizations, subscriptions, usage)
