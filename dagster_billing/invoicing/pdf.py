"""Invoice PDFs: Jinja2 HTML + CSS rendered by WeasyPrint, stored once per invoice.

Rendering is deterministic, so re-rendering an unchanged invoice gives the same bytes
(and the same `pdf_sha256`): the document dates come from the issue date (template meta
`dcterms.created`/`modified`), the PDF file identifier from the invoice number, and
WeasyPrint names font subsets from a hash of the font description, not at random.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

import jinja2
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.invoicing import InvoicingError
from dagster_billing.invoicing.document import Seller, load_documents
from dagster_billing.warehouse.schema import invoices

if TYPE_CHECKING:
    from weasyprint import CSS
    from weasyprint.text.fonts import FontConfiguration

DEFAULT_TEMPLATE_DIR = Path(__file__).parent / "templates"
PDF_SUBDIR = "invoices"


@lru_cache(maxsize=8)
def template_environment(template_dir: str) -> jinja2.Environment:
    """Templates from `template_dir`, then the defaults: a custom invoice.html may extend
    the shared layout (document.html), as the default one and the credit note do."""
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader([template_dir, str(DEFAULT_TEMPLATE_DIR)]),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
    )


def render_html(context: dict[str, Any], template_dir: Path = DEFAULT_TEMPLATE_DIR) -> str:
    return template_environment(str(template_dir)).get_template("invoice.html").render(**context)


@lru_cache(maxsize=1)
def _font_config() -> FontConfiguration:
    """One font configuration per process: building it costs more than laying out a page."""
    from weasyprint.text.fonts import FontConfiguration

    return FontConfiguration()


@lru_cache(maxsize=8)
def _stylesheets(template_dir: str) -> tuple[CSS, ...]:
    """`invoice.css` next to the template, parsed once per process."""
    import weasyprint

    css = Path(template_dir) / "invoice.css"
    if not css.is_file():
        return ()
    return (weasyprint.CSS(filename=str(css), font_config=_font_config()),)


def render_pdf(context: dict[str, Any], template_dir: Path = DEFAULT_TEMPLATE_DIR) -> bytes:
    """One invoice's PDF bytes; identical for an identical context and template."""
    return html_to_pdf(render_html(context, template_dir), context["number"], template_dir)


def html_to_pdf(
    html: str, number: str, base_dir: Path, stylesheet_dir: Path | None = None
) -> bytes:
    """A numbered document's PDF with the invoice stylesheet of `stylesheet_dir` (default
    `base_dir`) and the process's fonts; the PDF id comes from the number, so an identical
    page gives identical bytes. Credit notes use it with the invoices' stylesheet."""
    import weasyprint  # heavy (Pango, fonts): loaded only where PDFs are made

    identifier = hashlib.sha256(number.encode()).hexdigest()[:32].encode()
    return weasyprint.HTML(string=html, base_url=str(base_dir)).write_pdf(
        stylesheets=list(_stylesheets(str(stylesheet_dir or base_dir))),
        font_config=_font_config(),
        pdf_identifier=identifier,
    )


def _render_one(item: tuple[dict[str, Any], str]) -> bytes:
    context, template_dir = item
    return render_pdf(context, Path(template_dir))


def pdf_path(data_dir: Path, number: str) -> Path:
    return data_dir / PDF_SUBDIR / f"{number}.pdf"


def write_atomically(path: Path, data: bytes) -> None:
    """A reader never sees half a PDF: write a sibling file, then rename over."""
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(f".pdf.{os.getpid()}.partial")
    partial.write_bytes(data)
    partial.replace(path)


# Path and hash for a batch in one statement; a hash once recorded is never replaced.
_RECORD_PDFS = sa.text(
    """
    update dictamesh_billing_invoices i
    set pdf_path = v.path, pdf_sha256 = v.sha256, updated_at = now()
    from jsonb_to_recordset(cast(:rows as jsonb)) as v(id bigint, path text, sha256 text)
    where i.id = v.id and i.pdf_sha256 is null
    """
)


@dataclass(frozen=True)
class StoredPdf:
    number: str
    path: str
    sha256: str


def missing_pdfs(conn: Connection, start: datetime, end: datetime) -> list[int]:
    """Finalized invoices issued in [start, end) that have no stored PDF yet."""
    return list(
        conn.scalars(
            sa.select(invoices.c.id)
            .where(
                invoices.c.status != "draft",
                invoices.c.pdf_sha256.is_(None),
                invoices.c.issued_at >= start,
                invoices.c.issued_at < end,
            )
            .order_by(invoices.c.number)
        )
    )


def store_pdfs(
    conn: Connection,
    invoice_ids: list[int],
    *,
    seller: Seller,
    data_dir: Path,
    template_dir: Path = DEFAULT_TEMPLATE_DIR,
    workers: int = 1,
) -> list[StoredPdf]:
    """Render, write `<data_dir>/invoices/<number>.pdf` and record path and hash.

    Only invoices without a recorded hash are stored, so a re-run leaves documents
    already sent untouched; their rows are locked first, so a concurrent run waits and
    then skips them. `workers` > 1 renders in that many processes.
    """
    invoice_ids = list(
        conn.scalars(
            sa.select(invoices.c.id)
            .where(invoices.c.id.in_(invoice_ids), invoices.c.pdf_sha256.is_(None))
            .order_by(invoices.c.number)
            .with_for_update()
        )
    )
    contexts = load_documents(conn, invoice_ids, seller)
    rendered: Iterable[bytes]
    items = [(context, str(template_dir)) for context in contexts]
    if workers > 1 and len(items) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            rendered = list(pool.map(_render_one, items, chunksize=8))
    else:
        rendered = [_render_one(item) for item in items]
    stored = []
    for context, data in zip(contexts, rendered, strict=True):
        path = pdf_path(data_dir, context["number"])
        write_atomically(path, data)
        stored.append(StoredPdf(context["number"], str(path), hashlib.sha256(data).hexdigest()))
    if stored:
        conn.execute(
            _RECORD_PDFS,
            {
                "rows": json.dumps(
                    [
                        {"id": i, "path": s.path, "sha256": s.sha256}
                        for i, s in zip(invoice_ids, stored, strict=True)
                    ]
                )
            },
        )
    return stored


def render_invoice_number(
    conn: Connection, number: str, *, seller: Seller, template_dir: Path = DEFAULT_TEMPLATE_DIR
) -> bytes:
    """A finalized invoice's PDF by number (for the CLI and re-sends)."""
    invoice_id = conn.scalar(sa.select(invoices.c.id).where(invoices.c.number == number))
    if invoice_id is None:
        raise InvoicingError(f"number: no invoice {number!r}")
    (context,) = load_documents(conn, [invoice_id], seller)
    return render_pdf(context, template_dir)
