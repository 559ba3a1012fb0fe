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

from dagster_billing.catalog import CatalogError, load_catalog
from dagster_billing.rating.scenario import ScenarioError
from dagster_billing.settings import PROJECT_ROOT, ConfigError, get_settings

if TYPE_CHECKING:  # imported lazily at run time to keep `billing --help` fast
    from sqlalchemy.engine import Engine

# Locals stay out of tracebacks: they can hold secrets and megabytes of dbt manifest.
app = typer.Typer(
    no_args_is_help=True, add_completion=False, help=__doc__, pretty_exceptions_show_locals=False
)
db_app = typer.Typer(no_args_is_help=True, help="Warehouse schema migrations.")
catalog_app = typer.Typer(no_args_is_help=True, help="The plan and price catalog.")
audit_app = typer.Typer(no_args_is_help=True, help="The hash-chained audit log.")
usage_app = typer.Typer(no_args_is_help=True, help="Metered usage: import and inspect.")
invoice_app = typer.Typer(no_args_is_help=True, help="Invoices: preview and documents.")
app.add_typer(db_app, name="db")
app.add_typer(catalog_app, name="catalog")
app.add_typer(audit_app, name="audit")
app.add_typer(usage_app, name="usage")
app.add_typer(invoice_app, name="invoice")


def one_line_errors(func: Callable[..., Any]) -> Callable[..., Any]:
    """Configuration and input errors end the command with one clear line and exit 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except (ConfigError, CatalogError, ScenarioError) as exc:
            typer.echo(f"error: {exc}", err=True)
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


@audit_app.command("verify")
@one_line_errors
def audit_verify() -> None:
    """Recompute the audit log's hash chain; exit 1 at the first broken link."""
    from dagster_billing.warehouse.audit import verify_chain

    with _engine().connect() as conn:
        report = verify_chain(conn)
    if not report.ok:
        typer.echo(f"audit log broken at id {report.broken_at}: {report.reason}", err=True)
        raise typer.Exit(1)
    typer.echo(f"audit log intact: {report.rows} rows")


@app.command("simulate")
@one_line_errors
def simulate(
    scenario_file: Path = typer.Argument(..., exists=True, dir_okay=False, readable=True),
    as_json: bool = typer.Option(False, "--json", help="Machine-readable output."),
) -> None:
    """Bill a scenario (SCENARIO_FORMAT.md) with the production models, in isolation."""
    import json

    from dagster_billing.rating import simulate as sim
    from dagster_billing.warehouse.database import connect

    settings = get_settings()
    try:
        raw = sim.load_yaml(scenario_file)
    except ValueError as exc:
        raise ScenarioError(str(exc)) from None
    warehouse, engine = connect(settings)
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
    --skip-invalid; every bad row is reported by line and field."""
    from dagster_billing.usage.importer import UsageImportError, import_usage

    try:
        with _engine().begin() as conn:
            result = import_usage(conn, file, skip_invalid=skip_invalid)
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
) -> None:
    """Serve the REST API (and the Stripe webhook) with uvicorn."""
    import uvicorn

    from dagster_billing.api import create_app

    settings = get_settings()
    uvicorn.run(create_app(settings, _engine()), host=host, port=port, log_level="warning")


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
    # Ctrl-C reaches the child through the terminal; SIGTERM is passed on to it.
    child = subprocess.Popen(args, env={**os.environ, **dagster_environment(warehouse, settings)})
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: child.terminate())
    raise typer.Exit(child.wait())
