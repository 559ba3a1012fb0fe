"""Rendering: an event and the warehouse rows it names become a subject, text, HTML and
attachments. Money and dates go through the invoice PDF's Babel `Formatter`, so an email
says exactly what the invoice says, in the organization's locale."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from functools import cache
from pathlib import Path
from typing import Any

import jinja2
import sqlalchemy as sa
from sqlalchemy.engine import Connection

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


def _organization(conn: Connection, external_id: str) -> Any:
    row = conn.execute(
        sa.text(
            "select id, external_id, name, email, currency, coalesce(locale, 'en_US') as locale"
            " from dictamesh_billing_organizations where external_id = :e"
        ),
        {"e": external_id},
    ).one_or_none()
    if row is None:
        raise NotificationError(f"organization: no organization {external_id!r}")
    return row


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


def _invoice(conn: Connection, invoice_id: int, seller: Seller) -> dict[str, Any]:
    (document,) = load_documents(conn, [invoice_id], seller)
    return document


def build_context(
    conn: Connection, event: EventRow, spec: TemplateSpec, seller: Seller
) -> dict[str, Any]:
    """Everything a template may use: the organization, formatted amounts and dates."""
    org = _organization(conn, event.organization)
    payload = event.payload
    currency = (payload.get("currency") or org.currency or "USD").strip()
    fmt = Formatter(currency, org.locale)
    context: dict[str, Any] = {
        "organization": {"name": org.name, "account": org.external_id, "email": org.email},
        "lang": fmt.locale.language,
        "mandatory": spec.mandatory,
        "event_id": event.event_id,
    }
    if "invoice_id" in payload:
        context["invoice"] = _invoice(conn, int(payload["invoice_id"]), seller)
        fmt = Formatter(context["invoice"]["currency"], org.locale)
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
) -> Rendered:
    """The notification for `event` (its template is chosen by event type)."""
    spec = BY_EVENT_TYPE.get(event.event_type)
    if spec is None:
        raise NotificationError(f"event_type: no template for {event.event_type!r}")
    context = build_context(conn, event, spec, seller)
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


def template_names() -> list[str]:
    return sorted(TEMPLATES)
