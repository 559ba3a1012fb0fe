"""Rendering: an event and the warehouse rows it names become a subject, text, HTML and
attachments. Money and dates go through the invoice PDF's Babel `Formatter`, so an email
says exactly what the invoice says, in the organization's locale."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.invoicing import InvoicingError
from dagster_billing.invoicing.document import Formatter, Seller, load_documents
from dagster_billing.invoicing.pdf import DEFAULT_TEMPLATE_DIR, render_pdf
from dagster_billing.notifications.specs import BY_EVENT_TYPE, TEMPLATES, TemplateSpec

TEMPLATE_DIR = Path(__file__).parent / "templates"


class NotificationError(ValueError):
    """An event or template that cannot be rendered, phrased as `field: problem`."""


@dataclass(frozen=True)
class Attachment:
    filename: str
    content: bytes
    mimetype: str = "application/pdf"


@dataclass(frozen=True)
class Rendered:
    template: str
    subject: str
    text: str
    html: str
    locale: str
    attachments: list[Attachment] = field(default_factory=list)


@dataclass(frozen=True)
class EventRow:
    """What rendering needs of an outbox row."""

    event_id: str
    event_type: str
    organization: str  # external id
    payload: dict[str, Any]
    occurred_at: datetime


@cache
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATE_DIR),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def _plan_name(conn: Connection, plan_id: str | None, subscription: str | None) -> str:
    name = conn.scalar(
        sa.text(
            "select p.name from dictamesh_billing_subscription_plans p where p.id = coalesce("
            " :plan, (select s.plan_id from dictamesh_billing_subscriptions s"
            " where s.external_id = :sub))"
        ),
        {"plan": plan_id, "sub": subscription},
    )
    return name or plan_id or "DictaMesh"


def _when(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


@dataclass
class Preloaded:
    """Rows many events share, read in one query each (organizations, invoice documents)."""

    organizations: dict[str, Any] = field(default_factory=dict)
    documents: dict[int, dict[str, Any]] = field(default_factory=dict)


def preload(conn: Connection, events: list[EventRow], seller: Seller) -> Preloaded:
    orgs = sorted({e.organization for e in events})
    rows = conn.execute(
        sa.text(
            "select id, external_id, name, email, currency, coalesce(locale, 'en_US') as locale"
            " from dictamesh_billing_organizations where external_id = any(:e)"
        ),
        {"e": orgs},
    )
    invoice_ids = sorted(
        {int(e.payload["invoice_id"]) for e in events if "invoice_id" in e.payload}
    )
    documents = dict(zip(invoice_ids, load_documents(conn, invoice_ids, seller), strict=True))
    return Preloaded({row.external_id: row for row in rows}, documents)


@cache
def _formatter(currency: str, locale: str) -> Formatter:
    return Formatter(currency, locale)


def build_context(
    conn: Connection,
    event: EventRow,
    spec: TemplateSpec,
    seller: Seller,
    preloaded: Preloaded | None = None,
) -> dict[str, Any]:
    """Everything a template may use: the organization, formatted amounts and dates."""
    preloaded = preloaded or preload(conn, [event], seller)
    org = preloaded.organizations.get(event.organization)
    if org is None:
        raise NotificationError(f"organization: no organization {event.organization!r}")
    payload = event.payload
    currency = (payload.get("currency") or org.currency or "USD").strip()
    fmt = _formatter(currency, org.locale)
    context: dict[str, Any] = {
        "organization": {"name": org.name, "account": org.external_id, "email": org.email},
        "lang": fmt.locale.language,
        "mandatory": spec.mandatory,
        "event_id": event.event_id,
    }
    if "invoice_id" in payload:
        context["invoice"] = preloaded.documents[int(payload["invoice_id"])]
        fmt = _formatter(context["invoice"]["currency"], org.locale)
    if event.event_type.startswith("billing.payment."):
        context["amount"] = fmt.money(Decimal(payload["amount"]))
        paid = _when(payload.get("succeeded_at")) or event.occurred_at
        context["paid_on"] = fmt.date(paid)
        context["failure"] = payload.get("failure_message") or payload.get("failure_code", "")
        next_attempt = _when(payload.get("next_attempt_at"))
        context["next_attempt_on"] = fmt.date(next_attempt) if next_attempt else ""
    if event.event_type.startswith("billing.subscription."):
        context["plan_name"] = _plan_name(conn, payload.get("plan_id"), payload["subscription_id"])
        context["cycle"] = payload.get("billing_cycle", "")
        context["seats"] = payload.get("seats", "")
        for key in ("started_at", "canceled_at", "ends_at", "renews_at"):
            when = _when(payload.get(key))
            context[key.replace("_at", "_on")] = fmt.date(when) if when else ""
        amount = payload.get("amount")
        context["amount"] = fmt.money(Decimal(amount)) if amount else ""
    if event.event_type == "billing.usage.threshold_reached":
        metric = conn.execute(
            sa.text("select display_name, unit from dictamesh_billing_metrics where id = :m"),
            {"m": payload["metric"]},
        ).one_or_none()
        context |= {
            "plan_name": _plan_name(conn, payload["plan_id"], None),
            "metric_name": metric.display_name if metric else payload["metric"],
            "unit": metric.unit if metric else "",
            "threshold": int(payload["threshold"]),
            "usage": fmt.quantity(Decimal(payload["usage"])),
            "quota": fmt.quantity(Decimal(payload["quota"])),
            "period": fmt.period(_when(payload["period_start"]), _when(payload["period_end"])),
        }
    return context


def _invoice_pdf(conn: Connection, invoice: dict[str, Any], template_dir: Path) -> Attachment:
    """The stored PDF (the document as issued) when there is one, else rendered now."""
    stored = conn.scalar(
        sa.text("select pdf_path from dictamesh_billing_invoices where number = :n"),
        {"n": invoice["number"]},
    )
    if stored and Path(stored).is_file():
        content = Path(stored).read_bytes()
    else:
        content = render_pdf(invoice, template_dir)
    return Attachment(f"{invoice['number']}.pdf", content)


def render(
    conn: Connection,
    event: EventRow,
    seller: Seller,
    *,
    attach_pdf: bool = True,
    invoice_template_dir: Path = DEFAULT_TEMPLATE_DIR,
    preloaded: Preloaded | None = None,
) -> Rendered:
    """The notification for `event` (its template is chosen by event type)."""
    spec = BY_EVENT_TYPE.get(event.event_type)
    if spec is None:
        raise NotificationError(f"event_type: no template for {event.event_type!r}")
    try:
        context = build_context(conn, event, spec, seller, preloaded)
    except InvoicingError as exc:
        raise NotificationError(str(exc)) from None
    env = _environment()
    try:
        subject = env.from_string(spec.subject).render(context).strip()
        context["subject"] = subject
        text = env.get_template(f"{spec.name}.txt").render(context)
        html = env.get_template(f"{spec.name}.html").render(context)
    except jinja2.UndefinedError as exc:
        raise NotificationError(f"{spec.name}: {exc.message}") from None
    attachments = []
    if spec.attach_invoice and attach_pdf:
        attachments.append(_invoice_pdf(conn, context["invoice"], invoice_template_dir))
    return Rendered(spec.name, subject, text, html, str(context["lang"]), attachments)


def render_many(
    conn: Connection,
    events: Sequence[EventRow],
    seller: Seller,
    *,
    attach_pdf: Sequence[bool] | None = None,
    invoice_template_dir: Path = DEFAULT_TEMPLATE_DIR,
) -> list[Rendered | NotificationError]:
    """Render a batch, reading the rows it shares once and each event once (several
    recipients of one event share its message); a failure is returned in its place."""
    attach = list(attach_pdf) if attach_pdf is not None else [True] * len(events)
    try:
        preloaded: Preloaded | None = preload(conn, list(events), seller)
    except InvoicingError:
        preloaded = None  # one bad invoice: each event on its own, to find it
    done: dict[tuple[str, bool], Rendered | NotificationError] = {}
    for event, with_pdf in zip(events, attach, strict=True):
        key = (event.event_id, with_pdf)
        if key in done:
            continue
        try:
            done[key] = render(
                conn,
                event,
                seller,
                attach_pdf=with_pdf,
                invoice_template_dir=invoice_template_dir,
                preloaded=preloaded,
            )
        except NotificationError as exc:
            done[key] = exc
    return [done[(e.event_id, a)] for e, a in zip(events, attach, strict=True)]


def template_names() -> list[str]:
    return sorted(TEMPLATES)
