"""The `billing` command. Every subcommand reads settings once and fails with one line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from typer._click import exceptions as click_errors  # typer 0.29 vendors click

from dagster_billing.catalog import CatalogError, load_catalog
from dagster_billing.customers.errors import CustomerError, NotFoundError
from dagster_billing.rating.scenario import ScenarioError
from dagster_billing.redact import redact
from dagster_billing.settings import PROJECT_ROOT, ConfigError, get_settings

if TYPE_CHECKING:  # imported lazily at run time to keep `billing --help` fast
    from sqlalchemy.engine import Engine


def describe_error(exc: BaseException) -> str:
    """One line for any error that reaches the top: what was wrong and where, with every
    password in a URL masked. Known kinds say it in their own words."""
    import sqlalchemy.exc

    from dagster_billing.resources.prometheus import PrometheusUnavailableError

    if isinstance(exc, click_errors.UsageError):
        where = exc.ctx.command_path if exc.ctx else "billing"
        return f"{where}: {exc.format_message()} (see --help)"
    if isinstance(exc, click_errors.ClickException):
        return exc.format_message()
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or exc}"
    if isinstance(exc, sqlalchemy.exc.DBAPIError):
        first = str(exc.orig or exc).strip().splitlines()
        return f"database: {first[0] if first else type(exc).__name__}"
    if isinstance(exc, sqlalchemy.exc.SQLAlchemyError | PrometheusUnavailableError | ValueError):
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


class _OneLineTyper(typer.Typer):
    """The `billing` entry point: whatever goes wrong ends in one `error: ...` line on
    stderr (exit 2 for bad input, 1 otherwise), never a traceback: tracebacks repeat
    settings and URLs a console must not show."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            code = super().__call__(*args, **{**kwargs, "standalone_mode": False})
        except click_errors.NoArgsIsHelpError as exc:
            exc.show()
            sys.exit(2)
        except click_errors.UsageError as exc:
            typer.echo(f"error: {redact(describe_error(exc))}", err=True)
            sys.exit(2)
        except (typer.Abort, KeyboardInterrupt):
            typer.echo("error: interrupted", err=True)
            sys.exit(130)
        except Exception as exc:
            typer.echo(f"error: {redact(describe_error(exc))}", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


app = _OneLineTyper(
    no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_show_locals=False
)
db_app = typer.Typer(no_args_is_help=True, help="Warehouse schema migrations.")
catalog_app = typer.Typer(no_args_is_help=True, help="The plan and price catalog.")
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit log.")
usage_app = typer.Typer(no_args_is_help=True, help="Metered usage: import and inspect.")
invoice_app = typer.Typer(no_args_is_help=True, help="Invoices: preview and documents.")
metrics_app = typer.Typer(no_args_is_help=True, help="Prometheus metrics from the warehouse.")
app.add_typer(db_app, name="db")
app.add_typer(catalog_app, name="catalog")
app.add_typer(audit_app, name="audit")
app.add_typer(usage_app, name="usage")
app.add_typer(invoice_app, name="invoice")
app.add_typer(metrics_app, name="metrics")
api_key_app = typer.Typer(no_args_is_help=True, help="REST API keys: create, list, revoke.")
app.add_typer(api_key_app, name="api-key")
events_app = typer.Typer(no_args_is_help=True, help="Billing events: the outbox relay to Kafka.")
notifications_app = typer.Typer(no_args_is_help=True, help="Customer notifications.")
app.add_typer(events_app, name="events")
app.add_typer(notifications_app, name="notifications")


def one_line_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Configuration and input errors end the command with one clear line and exit 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ConfigError, CatalogError, ScenarioError, CustomerError, NotFoundError) as exc:
            typer.echo(f"error: {redact(exc)}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def _engine() -> Engine:
    from dagster_billing.warehouse.database import connect

    return connect(get_settings())[1]


@db_app.command("upgrade")
@one_line_errors
def db_upgrade(revision: str = typer.Argument("head")) -> None:
    """Migrate the warehouse up to REVISION (default: head)."""
    from dagster_billing.warehouse import migrate

    engine = _engine()
    migrate.upgrade(engine, revision)
    typer.echo(f"warehouse at {migrate.current_revision(engine)}")


@db_app.command("downgrade")
@one_line_errors
def db_downgrade(revision: str = typer.Argument("-1")) -> None:
    """Migrate the warehouse down to REVISION (default: one step; `base` empties it)."""
    from dagster_billing.warehouse import migrate

    engine = _engine()
    migrate.downgrade(engine, revision)
    typer.echo(f"warehouse at {migrate.current_revision(engine) or 'base'}")


@db_app.command("current")
@one_line_errors
def db_current() -> None:
    """Print the warehouse's migration revision."""
    from dagster_billing.warehouse import migrate

    typer.echo(migrate.current_revision(_engine()) or "base")


@catalog_app.command("sync")
@one_line_errors
def catalog_sync() -> None:
    """Load the default catalog into the warehouse (idempotent)."""
    from dagster_billing.catalog.sync import sync_catalog

    catalog = load_catalog()
    with _engine().begin() as conn:
        changed = sync_catalog(conn, catalog)
    typer.echo(f"catalog {catalog.version}: {sum(changed.values())} rows changed")
    for table, count in changed.items():
        if count:
            typer.echo(f"  {table}: {count}")


def _engine_and_instance() -> tuple[Engine, Any]:
    """The warehouse and the Dagster instance `billing dev` uses (the audit checkpoints
    live in its event log)."""
    import dagster as dg

    from dagster_billing.demo import dagster_environment
    from dagster_billing.warehouse.database import connect

    settings = get_settings()
    warehouse, engine = connect(settings)
    os.environ.update(dagster_environment(warehouse, settings))
    return engine, dg.DagsterInstance.get()


@audit_app.command("verify")
@one_line_errors
def audit_verify(
    checkpoint: str = typer.Option(
        None, "--checkpoint", help="ID:HASH kept from `billing audit checkpoint`."
    ),
) -> None:
    """Recompute the audit log's hash chain and compare its head with the latest
    checkpoint (or --checkpoint); exit 1 at the first broken link or a cut end."""
    from dagster_billing.assets.audit import latest_checkpoint, warehouse_name
    from dagster_billing.warehouse.audit import Checkpoint, verify_chain

    if checkpoint is not None:
        try:
            head = Checkpoint.parse(checkpoint)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        engine = _engine()
    else:
        engine, instance = _engine_and_instance()
        with engine.connect() as conn, instance:
            head = latest_checkpoint(instance, warehouse_name(conn))
    with engine.connect() as conn:
        report = verify_chain(conn, head)
    if not report.ok:
        typer.echo(f"audit log broken at id {report.broken_at}: {report.reason}", err=True)
        raise typer.Exit(1)
    if head is None:
        typer.echo(
            "warning: no audit checkpoint yet, rows cut from the end would go unnoticed;"
            " run `billing audit checkpoint`",
            err=True,
        )
        typer.echo(f"audit log intact: {report.rows} rows")
    else:
        typer.echo(f"audit log intact: {report.rows} rows, checkpoint {head} present")


@audit_app.command("checkpoint")
@one_line_errors
def audit_checkpoint() -> None:
    """Record the audit chain's head in the Dagster instance and print it (ID:HASH)
    for an operator to keep: `billing audit verify` then detects rows cut from the end."""
    from dagster_billing.assets.audit import record_checkpoint, warehouse_name
    from dagster_billing.warehouse.audit import chain_head

    engine, instance = _engine_and_instance()
    with engine.begin() as conn:
        head = chain_head(conn)
        name = warehouse_name(conn)
    with instance:
        record_checkpoint(instance, head, name)
    typer.echo(f"audit checkpoint {head} ({head.rows} rows)")


def _default_currency(raw: Any, currency: str) -> None:
    """A scenario organization that names no currency is billed in INVOICE_DEFAULT_CURRENCY,
    as a new organization is."""
    organizations = raw.get("organizations") if isinstance(raw, dict) else None
    for organization in organizations if isinstance(organizations, list) else []:
        if isinstance(organization, dict) and organization.get("currency") is None:
            organization["currency"] = currency


def _prepare_embedded(engine: Engine) -> None:
    """A fresh clone's embedded warehouse gets its schema and catalog on first use (both
    idempotent), so `billing simulate` works without setup; a configured server is left
    to its operator."""
    from dagster_billing.catalog.sync import sync_catalog
    from dagster_billing.warehouse import migrate

    migrate.upgrade(engine)
    with engine.begin() as conn:
        sync_catalog(conn, load_catalog())


@app.command("simulate")
@one_line_errors
def simulate(
    scenario_file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Bill a scenario (docs/scenario-format.md) with the production models, in isolation."""
    import json

    from dagster_billing.rating import simulate as sim
    from dagster_billing.warehouse.database import connect

    settings = get_settings()
    try:
        raw = sim.load_yaml(scenario_file)
    except ValueError as exc:
        raise ScenarioError(str(exc)) from None
    _default_currency(raw, settings.invoice_default_currency)
    warehouse, engine = connect(settings)
    if warehouse.embedded:
        _prepare_embedded(engine)
    result = sim.bill(engine, warehouse, settings, raw)
    typer.echo(json.dumps(result, indent=2) if as_json else sim.render_table(result))


@app.command("rerate")
@one_line_errors
def rerate(
    catalog: Path = typer.Option(..., "--catalog", help="The corrected catalog file."),
    start: str = typer.Option(..., "--from", help="First billing date (YYYY-MM-DD, UTC)."),
    end: str = typer.Option(..., "--to", help="End of the window, exclusive (YYYY-MM-DD)."),
    organization: str | None = typer.Option(None, "--org", help="One organization only."),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
    do_apply: bool = typer.Option(
        False, "--apply", help="Write the differences as adjustments for the next invoices."
    ),
) -> None:
    """Rate issued invoices of [--from, --to) again under a corrected catalog and print
    the difference per invoice; --apply puts it on each subscription's next invoice."""
    import json

    from dagster_billing.finance import rerate as rr
    from dagster_billing.warehouse.database import connect

    try:
        window = rr.parse_day(start, "--from"), rr.parse_day(end, "--to")
        rr.check_window(*window)
    except rr.RerateError as exc:
        raise ConfigError(str(exc)) from None
    corrected = rr.load_corrected_catalog(catalog)
    settings = get_settings()
    warehouse, engine = connect(settings)
    try:
        result = rr.diff(engine, warehouse, settings, corrected, *window, organization)
        applied = None
        if do_apply:
            with engine.begin() as conn:
                applied = rr.apply(conn, result, actor="cli")
    except rr.RerateError as exc:
        raise ConfigError(str(exc)) from None
    if as_json:
        out = result.as_json()
        if applied is not None:
            out["applied"] = {"new": applied.applied, "already_applied": applied.already_applied}
        typer.echo(json.dumps(out, indent=2))
        return
    typer.echo(rr.render_table(result))
    if applied is not None:
        typer.echo(
            f"applied: {applied.applied} adjustment(s) for the next invoices,"
            f" {applied.already_applied} already applied before"
        )


@app.command("export")
@one_line_errors
def export(
    mart: str = typer.Argument(..., help="A finance mart, e.g. fct_revenue_recognition."),
    out: Path = typer.Option(..., "-o", "--output", help="FILE.csv, FILE.xlsx or FILE.parquet."),
    month: str | None = typer.Option(None, "--month", help="Only this month (YYYY-MM)."),
) -> None:
    """Export a finance mart for the month-end close (pandas; exact decimals in CSV and
    Parquet)."""
    from dagster_billing.finance.export import ExportError, check_request, export_mart, parse_month

    try:
        check_request(mart, out)
        first = parse_month(month)
        with _engine().connect() as conn:
            rows = export_mart(conn, mart, out, first)
    except ExportError as exc:
        raise ConfigError(str(exc)) from None
    typer.echo(f"{rows} rows of {mart} written to {out}")


@app.command("docs")
@one_line_errors
def docs(
    port: int = typer.Option(8580, "--port", help="Port of the documentation site."),
    serve: bool = typer.Option(True, "--serve/--no-serve", help="Serve after generating."),
) -> None:
    """Generate the dbt documentation site (models, columns, tests, lineage, exposures)
    from the warehouse and serve it on 127.0.0.1:PORT until interrupted."""
    from dagster_billing.dbt_project import DBT_EXECUTABLE, DBT_PROFILES_DIR
    from dagster_billing.resources.warehouse import dbt_env
    from dagster_billing.warehouse.database import connect

    warehouse, _ = connect(get_settings())
    target = PROJECT_ROOT / "target" / "docs"
    common = ["--profiles-dir", str(DBT_PROFILES_DIR), "--target-path", str(target)]
    env = {**os.environ, **dbt_env(warehouse, "analytics")}
    generated = subprocess.run(
        [DBT_EXECUTABLE, "docs", "generate", "--quiet", *common], cwd=PROJECT_ROOT, env=env
    )
    if generated.returncode != 0:
        raise ConfigError("dbt docs generate failed (its output is above)")
    typer.echo(f"documentation generated in {target}")
    if serve:
        typer.echo(f"serving http://127.0.0.1:{port} (Ctrl-C stops)")
        address = ["--host", "127.0.0.1", "--port", str(port), "--no-browser"]
        subprocess.run(
            [DBT_EXECUTABLE, "docs", "serve", *common, *address],
            cwd=PROJECT_ROOT,
            env=env,
        )


@usage_app.command("import")
@one_line_errors
def usage_import(
    file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    skip_invalid: bool = typer.Option(
        False, "--skip-invalid", help="Import the valid rows of a file that has bad ones."
    ),
) -> None:
    """Import hourly usage from CSV or JSON Lines (organization, metric, hour or timestamp,
    quantity, optional idempotency_key). A file with bad rows imports nothing unless
    --skip-invalid; every bad row is reported by line and field. Hours older than
    USAGE_RETENTION_DAYS or later than now + USAGE_MAX_CLOCK_SKEW_MINUTES are bad rows."""
    from datetime import UTC, datetime

    from dagster_billing.usage.importer import UsageImportError, accepted_hours, import_usage

    settings = get_settings()
    window = accepted_hours(
        datetime.now(UTC), settings.usage_retention_days, settings.usage_max_clock_skew_minutes
    )
    try:
        with _engine().begin() as conn:
            result = import_usage(conn, file, skip_invalid=skip_invalid, window=window)
    except UsageImportError as exc:
        for problem in exc.problems:
            typer.echo(f"  {problem}", err=True)
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(1) from None
    for problem in result.problems:
        typer.echo(f"  skipped {problem}", err=True)
    typer.echo(
        f"{file.name}: {result.rows_read} rows read, {result.rows_written} written,"
        f" {result.rows_duplicate} duplicates, {result.rows_invalid} invalid skipped,"
        f" {result.adjustments} adjustments to invoiced hours"
    )


@usage_app.command("current")
@one_line_errors
def usage_current(
    organization: str = typer.Argument(..., help="Organization external id."),
    since: str = typer.Option(
        None, help="Start of the period (ISO instant; default: this UTC month's first hour)."
    ),
) -> None:
    """ORGANIZATION's usage since SINCE: the warehouse's hours and, with
    USAGE_ENABLE_REALTIME, the recent hours Prometheus has that are not ingested yet."""
    from datetime import UTC, datetime

    from dagster_billing.resources import PrometheusResource
    from dagster_billing.usage.realtime import current_period_usage

    settings = get_settings()
    now = datetime.now(UTC)
    try:
        start = datetime.fromisoformat(since) if since else now.replace(day=1, hour=0)
    except ValueError:
        raise ConfigError(f"--since: not an ISO timestamp, got {since!r}") from None
    start = start.replace(minute=0, second=0, microsecond=0, tzinfo=start.tzinfo or UTC)
    url = settings.prometheus_url
    prometheus = PrometheusResource(url=str(url)) if url else None
    with _engine().connect() as conn:
        try:
            usage = current_period_usage(
                conn, organization, start, now, prometheus, settings.usage_enable_realtime
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    typer.echo(f"{organization} since {start:%Y-%m-%dT%H:%MZ}:")
    for metric, quantity in sorted(usage.quantities.items()):
        typer.echo(f"  {metric:<17} {quantity.normalize():f}")
    live = ", ".join(f"{hour:%H:%M}" for hour in usage.live_hours) or "none"
    typer.echo(f"  live hours from Prometheus: {live}")


def invoice_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """An invoice that cannot be found or changed ends the command with one line, exit 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from dagster_billing.invoicing import InvoicingError

        try:
            return func(*args, **kwargs)
        except InvoicingError as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


@invoice_app.command("preview")
@one_line_errors
@invoice_errors
def invoice_preview(
    organization: str = typer.Argument(..., help="Organization external id."),
    schema: str = typer.Option("analytics", help="dbt schema with the draft marts."),
) -> None:
    """Show ORGANIZATION's upcoming invoice: its next draft not finalized yet."""
    from dagster_billing.invoicing.document import preview_lines
    from dagster_billing.invoicing.marts import preview_invoice

    with _engine().connect() as conn:
        draft = preview_invoice(conn, organization, schema)
        if draft is None:
            typer.echo(f"error: organization {organization!r} has no upcoming invoice", err=True)
            raise typer.Exit(1)
        for line in preview_lines(conn, draft):
            typer.echo(line)


@invoice_app.command("pdf")
@one_line_errors
@invoice_errors
def invoice_pdf(
    number: str = typer.Argument(..., help="Invoice number, e.g. INV-2026-000042."),
    output: Path = typer.Option(..., "--output", "-o", help="File to write the PDF to."),
) -> None:
    """Render invoice NUMBER as it stands now (the stored PDF is the document as issued)."""
    from dagster_billing.invoicing.pdf import render_invoice_number
    from dagster_billing.resources import InvoicingResource

    if not output.parent.is_dir():
        raise ConfigError(f"--output: directory {str(output.parent)!r} does not exist")
    invoicing = InvoicingResource.from_settings(get_settings())
    with _engine().connect() as conn:
        data = render_invoice_number(
            conn, number, seller=invoicing.seller, template_dir=invoicing.templates
        )
    output.write_bytes(data)
    typer.echo(f"{number}: {len(data)} bytes written to {output}")


@invoice_app.command("void")
@one_line_errors
@invoice_errors
def invoice_void(
    number: str = typer.Argument(..., help="Invoice number."),
    reason: str = typer.Option(..., "--reason", help="Why (kept in the audit log)."),
    actor: str = typer.Option(os.environ.get("USER", "cli"), help="Who voids it."),
) -> None:
    """Void an open invoice: audited, and its consumed credits are returned."""
    from datetime import UTC, datetime

    from dagster_billing.invoicing.lifecycle import void_invoice

    with _engine().begin() as conn:
        result = void_invoice(conn, number, reason=reason, actor=actor, at=datetime.now(UTC))
    typer.echo(f"{number}: void, {result.credits_returned} credit application(s) returned")


def payment_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """A refused payment or refund ends the command with one line, exit 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from dagster_billing.payments import PaymentError
        from dagster_billing.payments.gateway import GatewayDeclinedError, GatewayRejectedError

        try:
            return func(*args, **kwargs)
        except (PaymentError, GatewayDeclinedError, GatewayRejectedError) as exc:
            typer.echo(f"error: {exc}", err=True)
            raise typer.Exit(2) from None

    return wrapper


@invoice_app.command("pay")
@one_line_errors
@payment_errors
def invoice_pay(
    number: str = typer.Argument(..., help="Invoice number."),
    manual: bool = typer.Option(False, "--manual", help="Record a bank transfer or cheque."),
    reference: str = typer.Option("", "--reference", help="The transfer's reference."),
    actor: str = typer.Option(os.environ.get("USER", "cli"), help="Who records it."),
) -> None:
    """Record a manual payment (--manual --reference TEXT), or charge the invoice through
    Stripe now (STRIPE_ENABLED)."""
    from datetime import UTC, datetime

    import sqlalchemy as sa

    from dagster_billing.payments import PaymentError
    from dagster_billing.warehouse.schema import invoices

    settings = get_settings()
    now = datetime.now(UTC)
    if manual:
        from dagster_billing.payments.refunds import record_manual_payment

        with _engine().begin() as conn:
            payment_id = record_manual_payment(
                conn, number, reference=reference, actor=actor, at=now
            )
        typer.echo(f"{number}: paid manually (payment {payment_id}, reference {reference})")
        return
    if not settings.stripe_enabled:
        raise PaymentError("STRIPE_ENABLED: false; use --manual --reference for a bank transfer")
    from dagster_billing.payments.charging import charge_invoice
    from dagster_billing.resources.stripe import gateway_from_settings

    engine = _engine()
    with engine.connect() as conn:
        invoice_id = conn.scalar(sa.select(invoices.c.id).where(invoices.c.number == number))
    if invoice_id is None:
        raise PaymentError(f"number: no invoice {number!r}")
    outcome = charge_invoice(
        engine,
        gateway_from_settings(settings),
        invoice_id,
        now=now,
        retry_days=settings.payment_retry_days,
    )
    detail = f" ({outcome.failure_code})" if outcome.failure_code else ""
    typer.echo(f"{number}: {outcome.status}{detail}")
    if outcome.status not in ("succeeded", "processing"):
        raise typer.Exit(1)


@invoice_app.command("refund")
@one_line_errors
@payment_errors
def invoice_refund(
    number: str = typer.Argument(..., help="Invoice number."),
    amount: str | None = typer.Option(None, "--amount", help="Default: all still refundable."),
    reason: str = typer.Option(..., "--reason", help="Printed on the credit note, audited."),
    actor: str = typer.Option(os.environ.get("USER", "cli"), help="Who refunds it."),
) -> None:
    """Refund a paid invoice (partially with --amount): Stripe refund, credit note, PDF."""
    from datetime import UTC, datetime

    from dagster_billing.payments.refunds import refund_invoice
    from dagster_billing.resources import InvoicingResource
    from dagster_billing.resources.stripe import gateway_from_settings

    settings = get_settings()
    invoicing = InvoicingResource.from_settings(settings)
    gateway = gateway_from_settings(settings) if settings.stripe_api_key else None
    note = refund_invoice(
        _engine(),
        gateway,
        number,
        amount=amount,
        reason=reason,
        actor=actor,
        at=datetime.now(UTC),
        seller=invoicing.seller,
        data_dir=Path(invoicing.data_dir),
    )
    from decimal import Decimal

    from babel.numbers import get_currency_precision

    amount_text = note.amount.quantize(Decimal(1).scaleb(-get_currency_precision(note.currency)))
    typer.echo(f"{number}: refunded {amount_text} {note.currency}, credit note {note.number}")
    if note.pdf_path:
        typer.echo(f"  {note.pdf_path}")


@app.command("demo")
@one_line_errors
def demo() -> None:
    """Set up the embedded warehouse, load demo data, run every asset, print a summary."""
    from dagster_billing.demo import run_demo

    run_demo(get_settings(), echo=typer.echo)


@app.command("api")
@one_line_errors
def api(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(8000, help="Port to listen on."),
    openapi: Path | None = typer.Option(
        None, "--openapi", help="Write the OpenAPI document to this file and exit."
    ),
) -> None:
    """Serve the REST API (and the Stripe webhook) with uvicorn."""
    import uvicorn

    from dagster_billing.api import create_app

    settings = get_settings()
    if openapi is not None:
        import sqlalchemy as sa

        from dagster_billing.api.openapi import render

        # the document does not depend on the database: this engine never connects
        openapi.write_text(render(create_app(settings, sa.create_engine("postgresql+psycopg://"))))
        typer.echo(f"wrote {openapi}")
        return
    uvicorn.run(create_app(settings, _engine()), host=host, port=port, log_level="warning")


@metrics_app.command("serve")
@one_line_errors
def metrics_serve(
    host: str = typer.Option("127.0.0.1", help="Address to listen on."),
    port: int = typer.Option(9109, help="Port to listen on."),
) -> None:
    """Serve /metrics (business figures from the warehouse) for deployments without the API."""
    import threading

    from dagster_billing.observability.metrics import serving

    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    with serving(_engine(), host, port) as bound:
        typer.echo(f"metrics on http://{host}:{bound}/metrics")  # listening from here on
        stop.wait()


@api_key_app.command("create")
@one_line_errors
def api_key_create(
    role: str = typer.Option(..., help="admin | finance | org_member | service"),
    org: str | None = typer.Option(None, help="Organization external id (org_member, service)."),
    name: str = typer.Option("", help="A label for the key."),
    actor: str = typer.Option(os.environ.get("USER", "cli"), help="Who creates it (audit log)."),
) -> None:
    """Create an API key and print it: it is shown this once and stored only hashed."""
    from dagster_billing.api.keys import create_key

    with _engine().begin() as conn:
        token, row = create_key(conn, role=role, organization=org, name=name, actor=actor)
    typer.echo(token)
    typer.echo(
        f"prefix {row['prefix']}, role {role}" + (f", organization {org}" if org else ""), err=True
    )


@api_key_app.command("list")
@one_line_errors
def api_key_list() -> None:
    """Every key: prefix, role, organization, created, last used, revoked."""
    from dagster_billing.api.keys import list_keys

    with _engine().connect() as conn:
        for row in list_keys(conn):
            typer.echo(
                f"{row['prefix']}  {row['role']:<10} {row['organization'] or '-':<16}"
                f" created {row['created_at']:%Y-%m-%d %H:%M}"
                f"  last used {row['last_used_at'] or 'never'}"
                + (f"  REVOKED {row['revoked_at']:%Y-%m-%d %H:%M}" if row["revoked_at"] else "")
            )


@api_key_app.command("revoke")
@one_line_errors
def api_key_revoke(
    prefix: str = typer.Argument(..., help="The key's prefix (the part after dmb_)."),
    actor: str = typer.Option(os.environ.get("USER", "cli"), help="Who revokes it (audit log)."),
) -> None:
    """Revoke a key: it stops working at once."""
    from dagster_billing.api.keys import revoke_key

    with _engine().begin() as conn:
        revoke_key(conn, prefix, actor=actor)
    typer.echo(f"{prefix}: revoked")


@app.command("dev", context_settings={"allow_extra_args": True, "ignore_unknown_options": True})
@one_line_errors
def dev(ctx: typer.Context) -> None:
    """Run the Dagster UI (`dagster dev`) against the warehouse, instance storage included."""
    from dagster_billing.demo import dagster_environment
    from dagster_billing.warehouse.database import connect

    settings = get_settings()
    warehouse, _ = connect(settings)
    dagster = str(Path(sys.executable).with_name("dagster"))
    args = [dagster, "dev", "-w", str(PROJECT_ROOT / "workspace.yaml"), *ctx.args]
    # A child, not exec: this process holds the embedded server and stops it on exit.
    # Ctrl-C reaches the child through the terminal. `dagster dev` stops on SIGINT and maps
    # SIGTERM to whatever SIGINT does, so a SIGINT ignored since start (a background job of
    # a script, some process managers) makes it ignore both: the child starts with SIGINT
    # handled (exec turns that into the default), and SIGTERM is passed on as SIGINT.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    child = subprocess.Popen(args, env={**os.environ, **dagster_environment(warehouse, settings)})
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: child.send_signal(signal.SIGINT))
    raise typer.Exit(child.wait())


@events_app.command("relay")
@one_line_errors
def events_relay(
    follow: bool = typer.Option(False, "--follow", help="Keep relaying until SIGTERM/SIGINT."),
    batch_size: int = typer.Option(10_000, min=1, help="Rows read and produced per batch."),
) -> None:
    """Publish unpublished outbox rows to Kafka (KAFKA_BOOTSTRAP_SERVERS) as CloudEvents."""
    import logging
    import threading

    from dagster_billing.events.relay import Relay
    from dagster_billing.resources.kafka import KafkaResource

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    kafka = KafkaResource.from_settings(get_settings())
    if not kafka.configured:
        raise ConfigError("KAFKA_BOOTSTRAP_SERVERS: not set; events stay in the outbox")
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    relay = Relay(_engine(), kafka.producer_config(), kafka.topic, batch_size=batch_size, stop=stop)
    result = relay.follow() if follow else relay.run()
    relay.close()
    typer.echo(
        f"events: {result.published} published to {kafka.topic}, {result.failed} failed,"
        f" {result.pending} waiting in the outbox"
    )


@notifications_app.command("preview")
@one_line_errors
def notifications_preview(
    template: str = typer.Argument(..., help="Template name, e.g. billing_invoice_generated."),
    org: str = typer.Option(..., "--org", help="Organization external id."),
    html: bool = typer.Option(False, "--html", help="The HTML part instead of the text part."),
    output: Path | None = typer.Option(None, "--output", "-o", help="Write to this file."),
) -> None:
    """Render TEMPLATE as ORG would receive it (its latest such event, or a sample)."""
    from dagster_billing.notifications.preview import preview
    from dagster_billing.notifications.render import NotificationError
    from dagster_billing.resources import InvoicingResource

    invoicing = InvoicingResource.from_settings(get_settings())
    try:
        with _engine().connect() as conn:
            rendered = preview(
                conn, template, org, invoicing.seller, invoice_template_dir=invoicing.templates
            )
    except NotificationError as exc:
        typer.echo(f"error: {exc}", err=True)
        raise typer.Exit(2) from None
    body = rendered.html if html else f"Subject: {rendered.subject}\n\n{rendered.text}"
    attached = [f"attachment: {a.filename} ({len(a.content)} bytes)" for a in rendered.attachments]
    if output is None:
        typer.echo(body)
        for line in attached:
            typer.echo(line)
        return
    output.write_text(body)
    typer.echo(f"{template} for {org}: written to {output}" + "".join(f"; {a}" for a in attached))
