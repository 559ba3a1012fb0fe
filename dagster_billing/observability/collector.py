"""Business and pipeline metrics read from the warehouse when Prometheus scrapes.

Figures come from the tables and marts, never from in-process counters: a restarted API
or a second replica reports the same numbers, and nothing drifts from the books. One
scrape runs a handful of indexed queries; the result is cached for `cache_seconds` so
several Prometheus servers (or a fast scrape interval) do not multiply the load. Each
source runs in its own short transaction with a statement timeout: a missing mart (dbt
not run yet) or a slow table drops that source's series and sets
`dictamesh_billing_metrics_source_up{source}` to 0, never the whole scrape.

Counters named `*_total` count warehouse rows by their *current* status, as the seed's
series do: a payment that moves from `processing` to `succeeded` moves between series,
so the sum over statuses only grows, and terminal statuses (`succeeded`, `failed`,
`paid`) only grow (that is what the dashboard and alerts take `increase()` of).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy.engine import Connection, Engine

from dagster_billing.invoicing.marts import relation

log = logging.getLogger(__name__)

PREFIX = "dictamesh_billing"
# Days past due of open invoices, as finance buckets an aging report.
AGING_BUCKETS = ("not_due", "1_30", "31_60", "61_90", "over_90")
# Series exist from the first scrape, at 0, so rates and ratios have both sides.
INVOICE_STATUSES = ("open", "paid", "void", "uncollectible")
WEBHOOK_STATUSES = ("received", "processed", "failed", "ignored")
RUN_FAILED_EVENT = "billing.dagster_run.failed"

Source = Callable[[Connection, str], list[Metric]]


def _gauge(name: str, doc: str, labels: Sequence[str] = ()) -> GaugeMetricFamily:
    return GaugeMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))


def _counter(name: str, doc: str, labels: Sequence[str] = ()) -> CounterMetricFamily:
    return CounterMetricFamily(f"{PREFIX}_{name}", doc, labels=list(labels))


def _rows(conn: Connection, sql: str, **params: Any) -> list[sa.Row[Any]]:
    return list(conn.execute(sa.text(sql), params))


def subscriptions(conn: Connection, _schema: str) -> list[Metric]:
    """Active subscriptions by their plan now: the latest plan change in effect, else the
    subscription's own plan. One pass over each table, however many subscriptions."""
    family = _gauge("active_subscriptions", "Active subscriptions by current plan.", ["plan"])
    for row in _rows(
        conn,
        """
        with latest as (
            select distinct on (subscription_id) subscription_id, plan_id
            from dictamesh_billing_subscription_changes
            where plan_id is not null and effective_at <= now()
            order by subscription_id, effective_at desc
        )
        select coalesce(latest.plan_id, s.plan_id) as plan, count(*) as n
        from dictamesh_billing_subscriptions s
        left join latest on latest.subscription_id = s.id
        where s.status = 'active'
        group by 1
        """,
    ):
        family.add_metric([row.plan], row.n)
    return [family]


def revenue(conn: Connection, schema: str) -> list[Metric]:
    """MRR and ARR in USD for the newest month in the marts (dbt's `fct_mrr`, `fct_arr`)."""
    mrr = _gauge("mrr", "Monthly recurring revenue, USD, newest month of fct_mrr.")
    arr = _gauge("arr", "Annual recurring revenue, USD, newest month of fct_arr.")
    for family, table, column in ((mrr, "fct_mrr", "mrr_usd"), (arr, "fct_arr", "arr_usd")):
        value = conn.scalar(
            sa.text(
                f"select coalesce(sum({column}), 0) from {relation(schema, table)}"
                f" where month = (select max(month) from {relation(schema, table)})"
            )
        )
        family.add_metric([], float(value))
    return [mrr, arr]


def invoices(conn: Connection, _schema: str) -> list[Metric]:
    """Finalized invoices by status; open ones by days past due; and, for the collection
    rate, invoices that fell due in the last 90 days, paid or not."""
    generated = _counter("invoices_generated", "Finalized invoices by current status.", ["status"])
    statuses = dict.fromkeys(INVOICE_STATUSES, 0)
    for row in _rows(
        conn,
        "select status, count(*) as n from dictamesh_billing_invoices"
        " where number is not null group by status",
    ):
        statuses[row.status] = row.n
    for status, n in statuses.items():
        generated.add_metric([status], n)

    aging = _gauge("invoices_open", "Open invoices by days past due.", ["aging"])
    amount = _gauge(
        "invoices_open_amount",
        "Amount due on open invoices by currency and days past due.",
        ["currency", "aging"],
    )
    counts = dict.fromkeys(AGING_BUCKETS, 0)
    for row in _rows(
        conn,
        """
        select bucket, currency, count(*) as n, sum(amount_due) as due from (
            select currency, amount_due, case
                when due_at >= now() then 'not_due'
                when due_at >= now() - interval '30 days' then '1_30'
                when due_at >= now() - interval '60 days' then '31_60'
                when due_at >= now() - interval '90 days' then '61_90'
                else 'over_90' end as bucket
            from dictamesh_billing_invoices where status = 'open'
        ) o group by bucket, currency
        """,
    ):
        counts[row.bucket] += row.n
        amount.add_metric([row.currency.strip(), row.bucket], float(row.due))
    for bucket, n in counts.items():
        aging.add_metric([bucket], n)

    due = _gauge(
        "invoices_due_90d",
        "Finalized invoices with a due date in the last 90 days: paid, or not (yet).",
        ["outcome"],
    )
    outcomes = {"paid": 0, "unpaid": 0}
    for row in _rows(
        conn,
        """
        select case when status = 'paid' then 'paid' else 'unpaid' end as outcome,
               count(*) as n
        from dictamesh_billing_invoices
        where status in ('open', 'paid', 'uncollectible')
          and due_at >= now() - interval '90 days' and due_at < now()
        group by 1
        """,
    ):
        outcomes[row.outcome] = row.n
    for outcome, n in outcomes.items():
        due.add_metric([outcome], n)
    return [generated, aging, amount, due]


def payments(conn: Connection, _schema: str) -> list[Metric]:
    """Payment attempts by status and provider, failures by code, and dunning retries
    (attempts after the first) by outcome."""
    processed = _counter(
        "payments_processed",
        "Payment attempts by current status and provider.",
        ["status", "provider"],
    )
    failures = _counter("payment_failures", "Failed payment attempts by code.", ["failure_code"])
    dunning = _counter(
        "dunning_attempts", "Retry attempts (attempt > 1) by current status.", ["outcome"]
    )
    by_status: dict[tuple[str, str], int] = {("succeeded", "stripe"): 0, ("failed", "stripe"): 0}
    by_code: dict[str, int] = {}
    by_outcome: dict[str, int] = {}
    for row in _rows(
        conn,
        """
        select status, provider, failure_code, attempt > 1 as retry, count(*) as n
        from dictamesh_billing_payments group by 1, 2, 3, 4
        """,
    ):
        key = (row.status, row.provider)
        by_status[key] = by_status.get(key, 0) + row.n
        if row.status == "failed":
            code = row.failure_code or "unknown"
            by_code[code] = by_code.get(code, 0) + row.n
        if row.retry:
            by_outcome[row.status] = by_outcome.get(row.status, 0) + row.n
    for (status, provider), n in sorted(by_status.items()):
        processed.add_metric([status, provider], n)
    for code, n in sorted(by_code.items()):
        failures.add_metric([code], n)
    for outcome, n in sorted(by_outcome.items()):
        dunning.add_metric([outcome], n)
    return [processed, failures, dunning]


def outbox(conn: Connection, _schema: str) -> list[Metric]:
    """How far the relay is behind: unpublished events and the oldest one's age (0 when
    all are published), from the relay's queue of unpublished ids."""
    pending = _gauge("outbox_unpublished", "Outbox events not yet published to Kafka.")
    age = _gauge(
        "outbox_oldest_unpublished_age_seconds",
        "Age of the oldest unpublished outbox event (0: none pending).",
    )
    row = conn.execute(
        sa.text(
            """
            select count(*) as n,
                   coalesce(extract(epoch from now() - min(o.created_at)), 0) as age
            from dictamesh_billing_outbox_unpublished u
            join dictamesh_billing_outbox o on o.id = u.id
            """
        )
    ).one()
    pending.add_metric([], row.n)
    age.add_metric([], max(float(row.age), 0.0))
    failures = _counter(
        "dagster_run_failures",
        f"Failed Dagster runs, from the run-failure sensor's {RUN_FAILED_EVENT} events.",
        ["job"],
    )
    for r in _rows(
        conn,
        "select payload->>'job_name' as job, count(*) as n from dictamesh_billing_outbox"
        " where event_type = :type group by 1",
        type=RUN_FAILED_EVENT,
    ):
        failures.add_metric([r.job or "unknown"], r.n)
    return [pending, age, failures]


def webhooks(conn: Connection, _schema: str) -> list[Metric]:
    """The Stripe webhook inbox: events by status, and the oldest unhandled one's age."""
    by_status = _gauge("webhook_events", "Stripe webhook inbox rows by status.", ["status"])
    lag = _gauge(
        "webhook_inbox_lag_seconds",
        "Age of the oldest webhook event still `received` (0: none waiting).",
    )
    oldest = 0.0
    counts = dict.fromkeys(WEBHOOK_STATUSES, 0)
    for row in _rows(
        conn,
        """
        select status, count(*) as n,
               extract(epoch from now() - min(received_at)) as age
        from dictamesh_billing_stripe_webhook_events group by status
        """,
    ):
        counts[row.status] = row.n
        if row.status == "received":
            oldest = max(float(row.age), 0.0)
    for status, n in counts.items():
        by_status.add_metric([status], n)
    lag.add_metric([], oldest)
    return [by_status, lag]


def usage(conn: Connection, _schema: str) -> list[Metric]:
    """Usage freshness and trend: the newest stored hour (through the hour index), how
    long ago it closed, that hour's quantity per metric, and the last day's rejects."""
    newest = _gauge(
        "usage_newest_hour_timestamp_seconds", "Start of the newest hour with stored usage."
    )
    lag = _gauge(
        "usage_ingest_lag_seconds",
        "Seconds since the newest hour with stored usage ended (0 while it is open).",
    )
    quantity = _gauge(
        "usage_last_hour_quantity",
        "Usage of the newest stored hour, all organizations, raw units per metric.",
        ["metric"],
    )
    rejects = _gauge(
        "usage_ingest_rejects_24h",
        "Samples and series usage ingestion refused over the last 24 hours.",
        ["metric", "reason"],
    )
    row = conn.execute(
        sa.text(
            "select hour_start, extract(epoch from hour_start) as at,"
            " greatest(extract(epoch from now() - hour_start) - 3600, 0) as lag"
            " from dictamesh_billing_usage_metrics order by hour_start desc limit 1"
        )
    ).first()
    families: list[Metric] = [rejects]
    if row is not None:
        newest.add_metric([], float(row.at))
        lag.add_metric([], float(row.lag))
        for r in _rows(
            conn,
            "select metric, sum(quantity) as q from dictamesh_billing_usage_metrics"
            " where hour_start = :hour group by metric",
            hour=row.hour_start,
        ):
            quantity.add_metric([r.metric], float(r.q))
        families += [newest, lag, quantity]
    for r in _rows(
        conn,
        "select metric, reason, count(*) as n from dictamesh_billing_usage_rejects"
        " where hour_start >= now() - interval '24 hours' group by 1, 2",
    ):
        rejects.add_metric([r.metric or "unknown", r.reason], r.n)
    return families


def credits(conn: Connection, _schema: str) -> list[Metric]:
    """Outstanding credit by currency, and grants whose balance went below zero (the
    ledger should make that impossible: an alert, not a figure). Balances are summed in
    one pass over the ledger, then joined to their grants."""
    balance = _gauge(
        "credit_balance", "Unused credit on unexpired grants, by currency.", ["currency"]
    )
    negative = _gauge("credit_grants_negative", "Credit grants with a balance below zero.")
    n_negative = 0
    for row in _rows(
        conn,
        """
        select g.currency,
               sum(b.balance) filter (where g.expires_at is null or g.expires_at > now())
                   as open_balance,
               count(*) filter (where b.balance < 0) as negative
        from dictamesh_billing_credits g
        join (
            select coalesce(grant_id, id) as grant_id, sum(amount) as balance
            from dictamesh_billing_credits group by 1
        ) b on b.grant_id = g.id
        where g.entry_type = 'grant'
        group by g.currency
        """,
    ):
        balance.add_metric([row.currency.strip()], float(row.open_balance or 0))
        n_negative += row.negative
    negative.add_metric([], n_negative)
    return [balance, negative]


def notifications(conn: Connection, _schema: str) -> list[Metric]:
    """Notification deliveries that gave up (all retries spent) by channel; a delivery
    re-queued by `retry_failed` leaves the count when it is sent."""
    failures = _counter(
        "notification_failures",
        "Notification deliveries failed after every retry, by channel.",
        ["channel"],
    )
    for row in _rows(
        conn,
        "select channel, count(*) as n from dictamesh_billing_notification_deliveries"
        " where status = 'failed' group by 1",
    ):
        failures.add_metric([row.channel], row.n)
    return [failures]


SOURCES: dict[str, Source] = {
    "subscriptions": subscriptions,
    "revenue": revenue,
    "invoices": invoices,
    "payments": payments,
    "outbox": outbox,
    "webhooks": webhooks,
    "usage": usage,
    "credits": credits,
    "notifications": notifications,
}


@dataclass
class _Cached:
    at: float
    metrics: list[Metric]


class WarehouseCollector(Collector):
    """A prometheus_client collector over one engine; register it on a registry."""

    def __init__(
        self,
        engine: Engine,
        dbt_schema: str = "analytics",
        cache_seconds: float = 15.0,
        statement_timeout_ms: int = 5000,
        sources: dict[str, Source] | None = None,
    ) -> None:
        relation(dbt_schema, "fct_mrr")  # refuses a schema name that is not an identifier
        self.engine = engine
        self.dbt_schema = dbt_schema
        self.cache_seconds = cache_seconds
        self.statement_timeout_ms = int(statement_timeout_ms)
        self.sources = dict(SOURCES if sources is None else sources)
        self._lock = threading.Lock()
        self._cached: _Cached | None = None

    def describe(self) -> list[Metric]:
        """Nothing at registration: describing would query the warehouse."""
        return []

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = time.monotonic()
            if self._cached is None or now - self._cached.at >= self.cache_seconds:
                self._cached = _Cached(now, self._read())
            metrics = self._cached.metrics
        yield from metrics

    def _read(self) -> list[Metric]:
        up = _gauge(
            "metrics_source_up", "1 if the source's warehouse queries succeeded.", ["source"]
        )
        seconds = _gauge(
            "metrics_collect_seconds", "Time the last warehouse read took, all sources."
        )
        started = time.perf_counter()
        out: list[Metric] = []
        for name, source in self.sources.items():
            try:
                with self.engine.begin() as conn:
                    conn.execute(
                        sa.text(f"set local statement_timeout = {self.statement_timeout_ms}")
                    )
                    out.extend(source(conn, self.dbt_schema))
                up.add_metric([name], 1)
            except sa.exc.SQLAlchemyError as exc:
                # The first line only: a driver message can run to the whole statement.
                log.warning("metrics source %s failed: %s", name, str(exc).splitlines()[0])
                up.add_metric([name], 0)
        seconds.add_metric([], time.perf_counter() - started)
        return [*out, up, seconds]
