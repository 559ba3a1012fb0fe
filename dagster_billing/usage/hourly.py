"""Exact hourly usage from raw Prometheus samples.

A counter's usage in an hour is the sum of the increments between consecutive raw
samples, each attributed to the hour of the sample that observed it; a drop means the
process restarted, so the new value counts from zero. That needs the last sample before
the hour as the baseline. `increase()` and `rate()` extrapolate to the window edges and
would bill calls that never happened, so they are never used. Storage is a gauge: the
hour's quantity is the average of its samples.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any, Protocol

from dagster_billing.metering import SERIES_BY_METRIC

HOUR = timedelta(hours=1)
ONE_MS = timedelta(milliseconds=1)
BYTES_PER_GB = Decimal(10) ** 9
QUANTUM = Decimal("0.000001")
# Billing metric -> divisor from the recorded unit to the catalog's unit.
UNIT_DIVISOR = {
    "api_calls": Decimal(1),
    "storage": BYTES_PER_GB,
    "transfer": BYTES_PER_GB,
    "query_processing": BYTES_PER_GB,
}
GAUGES = frozenset({"storage"})
DEFAULT_BASELINE_LOOKBACK = timedelta(hours=1)
DEFAULT_FALLBACK_LOOKBACK = timedelta(days=7)
# Labels Prometheus adds per scrape target: storage pools its samples across them.
TARGET_LABELS = frozenset({"instance", "job"})


class PromQuerier(Protocol):
    def query(self, promql: str, at: datetime) -> list[dict[str, Any]]: ...


@dataclass(frozen=True)
class Reject:
    """A sample or series that was not billed, and why."""

    metric: str
    organization: str | None
    series: Mapping[str, str]
    reason: str
    sample_at: datetime | None = None
    value: str | None = None


@dataclass
class Series:
    labels: dict[str, str]
    samples: list[tuple[int, str]]  # (unix ms, raw value) inside the hour, in order
    baseline: str | None = None


@dataclass
class HourReading:
    """Raw usage per (organization external id, metric) in recorded units, plus rejects."""

    hour_start: datetime
    quantities: dict[tuple[str, str], Decimal] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    series: int = 0
    samples: int = 0


def to_catalog_units(metric: str, raw: Decimal) -> Decimal:
    """Bytes -> GB (10^9) exactly, then the warehouse's 6 decimals, half up."""
    return (raw / UNIT_DIVISOR[metric]).quantize(QUANTUM, rounding=ROUND_HALF_UP)


def _ms(at: datetime) -> int:
    return round(at.timestamp() * 1000)


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _parse(raw: str) -> Decimal | str:
    """The sample as a Decimal, or the reason it cannot be billed."""
    try:
        value = Decimal(raw)
    except InvalidOperation:
        return "unparseable"
    if value.is_nan():
        return "nan"
    if value.is_infinite():
        return "infinite"
    if value < 0:
        return "negative"
    return value


def counter_usage(metric: str, series: Series, org: str | None) -> tuple[Decimal, list[Reject]]:
    """Sum of increments inside the hour; a drop is a restart (counts from zero).

    No baseline means the series is new, so its first value counts from zero too. The
    baseline is the last valid sample before the hour (`read_hour` skips unbillable ones);
    only when none is found within the fallback lookback is it unusable, and then the
    first good sample becomes the baseline: billing nothing is safer than billing a
    counter's whole history.
    """
    rejects = []
    previous: Decimal | None = None
    fresh = series.baseline is None
    if series.baseline is not None:
        parsed = _parse(series.baseline)
        previous = parsed if isinstance(parsed, Decimal) else None
    total = Decimal(0)
    for ms, raw in series.samples:
        value = _parse(raw)
        if isinstance(value, str):
            rejects.append(Reject(metric, org, series.labels, value, _at(ms), raw))
            continue
        if previous is None:
            total += value if fresh else 0
        else:
            total += value - previous if value >= previous else value
        previous = value
        fresh = False
    return total, rejects


def gauge_samples(
    metric: str, series: Series, org: str | None
) -> tuple[list[Decimal], list[Reject]]:
    values, rejects = [], []
    for ms, raw in series.samples:
        value = _parse(raw)
        if isinstance(value, str):
            rejects.append(Reject(metric, org, series.labels, value, _at(ms), raw))
        else:
            values.append(value)
    return values, rejects


def aggregate(hour_start: datetime, by_metric: Mapping[str, Iterable[Series]]) -> HourReading:
    """Per-organization raw usage for one hour from each metric's series."""
    reading = HourReading(hour_start)
    for metric, series_list in by_metric.items():
        pools: dict[tuple[str, tuple[tuple[str, str], ...]], list[Decimal]] = defaultdict(list)
        for series in series_list:
            reading.series += 1
            reading.samples += len(series.samples)
            org = series.labels.get("organization")
            if metric in GAUGES:
                values, rejects = gauge_samples(metric, series, org)
                key = tuple(
                    sorted((k, v) for k, v in series.labels.items() if k not in TARGET_LABELS)
                )
                if org:
                    pools[(org, key)].extend(values)
            else:
                usage, rejects = counter_usage(metric, series, org)
                if org:
                    current = reading.quantities.get((org, metric), Decimal(0))
                    reading.quantities[(org, metric)] = current + usage
            reading.rejects.extend(rejects)
            if not org:
                reading.rejects.append(Reject(metric, None, series.labels, "missing_organization"))
        for (org, _), values in pools.items():
            if values:
                average = sum(values, Decimal(0)) / len(values)
                current = reading.quantities.get((org, metric), Decimal(0))
                reading.quantities[(org, metric)] = current + average
    return reading


def _labels(result: Mapping[str, Any]) -> tuple[tuple[str, str], ...]:
    return tuple(sorted((k, v) for k, v in result["metric"].items() if k != "__name__"))


def _duration(delta: timedelta) -> str:
    return f"{int(delta.total_seconds())}s"


def _quoted(value: str) -> str:
    """A PromQL double-quoted string's content."""
    return value.replace("\\", "\\\\").replace('"', '\\"')


def _regex_alternatives(values: Iterable[str]) -> str:
    return "|".join(_quoted(re.escape(v)) for v in sorted(values))


def read_hour(
    prometheus: PromQuerier,
    hour_start: datetime,
    baseline_lookback: timedelta = DEFAULT_BASELINE_LOOKBACK,
    fallback_lookback: timedelta = DEFAULT_FALLBACK_LOOKBACK,
    organization: str | None = None,
) -> HourReading:
    """Raw samples of [hour_start, hour_start + 1h) and each counter's baseline.

    Queries are evaluated 1 ms before the boundary: Prometheus 2 range selectors include
    both ends, Prometheus 3 only the right one; this way a sample exactly on a boundary
    belongs to the hour it starts, with either version.
    """
    start_ms, end_ms = _ms(hour_start), _ms(hour_start + HOUR)
    by_metric: dict[str, list[Series]] = {}
    only = f'{{organization="{_quoted(organization)}"}}' if organization else ""
    for metric, series_name in SERIES_BY_METRIC.items():
        name = series_name + only
        found: dict[tuple[tuple[str, str], ...], Series] = {}
        for result in prometheus.query(f"{name}[{_duration(HOUR)}]", hour_start + HOUR - ONE_MS):
            samples = [
                (round(float(ts) * 1000), value)
                for ts, value in result["values"]
                if start_ms <= round(float(ts) * 1000) < end_ms
            ]
            if samples:
                labels = _labels(result)
                found[labels] = Series(dict(labels), samples)
        if metric not in GAUGES and found:
            _attach_baselines(prometheus, name, hour_start, found, baseline_lookback)
            missing = {
                org
                for s in found.values()
                if s.baseline is None and (org := s.labels.get("organization"))
            }
            if missing and fallback_lookback > baseline_lookback:
                selector = f'{series_name}{{organization=~"{_regex_alternatives(missing)}"}}'
                _attach_baselines(prometheus, selector, hour_start, found, fallback_lookback)
            for lookback in (baseline_lookback, max(baseline_lookback, fallback_lookback)):
                _repair_baselines(prometheus, series_name, hour_start, found, lookback)
        by_metric[metric] = list(found.values())
    return aggregate(hour_start, by_metric)


def _attach_baselines(
    prometheus: PromQuerier,
    selector: str,
    hour_start: datetime,
    found: dict[tuple[tuple[str, str], ...], Series],
    lookback: timedelta,
) -> None:
    promql = f"last_over_time({selector}[{_duration(lookback)}])"
    for result in prometheus.query(promql, hour_start - ONE_MS):
        series = found.get(_labels(result))
        if series is not None and series.baseline is None:
            series.baseline = result["value"][1]


def _last_valid(values: Iterable[tuple[float, str]]) -> str | None:
    """The newest raw value that can be billed (not NaN, infinite, negative or garbage)."""
    for _, raw in reversed(list(values)):
        if isinstance(_parse(raw), Decimal):
            return raw
    return None


def _repair_baselines(
    prometheus: PromQuerier,
    series_name: str,
    hour_start: datetime,
    found: dict[tuple[tuple[str, str], ...], Series],
    lookback: timedelta,
) -> None:
    """Replace an unbillable baseline (`last_over_time` returns a NaN as readily as a
    number) by the last valid sample before the hour, read raw over `lookback`.

    Without this the increments between that valid sample and the next one are billed in
    no hour at all. Only series with a bad baseline are read raw, so the common case stays
    one `last_over_time` query.
    """
    bad = {
        key: series
        for key, series in found.items()
        if series.baseline is not None
        and not isinstance(_parse(series.baseline), Decimal)
        and series.labels.get("organization")
    }
    if not bad:
        return
    orgs = {series.labels["organization"] for series in bad.values()}
    selector = f'{series_name}{{organization=~"{_regex_alternatives(orgs)}"}}'
    for result in prometheus.query(f"{selector}[{_duration(lookback)}]", hour_start - ONE_MS):
        series = bad.get(_labels(result))
        if series is not None and (valid := _last_valid(result["values"])) is not None:
            series.baseline = valid
