"""What an invoice says, formatted for its reader: Babel money and dates in the invoice
currency and the organization's locale. The template only places these strings."""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from babel import Locale, UnknownLocaleError
from babel.dates import format_date
from babel.numbers import format_decimal, format_percent, get_currency_precision
from sqlalchemy.engine import Connection

from dagster_billing.invoicing import InvoicingError
from dagster_billing.invoicing.marts import DraftInvoice
from dagster_billing.warehouse.schema import (
    credits,
    invoice_line_items,
    invoices,
    organizations,
    subscriptions,
)

ADDRESS_ORDER = ("line1", "line2", "postal_code", "city", "region", "country")
STATUS_STAMPS = {"paid": "Paid", "void": "Void", "uncollectible": "Uncollectible"}


@dataclass(frozen=True)
class Seller:
    name: str
    address: str
    tax_id: str
    payment_instructions: str

    @property
    def address_lines(self) -> list[str]:
        return [part.strip() for part in self.address.split(";") if part.strip()]


class Formatter:
    """Money, quantities and dates for one invoice's currency and locale."""

    def __init__(self, currency: str, locale: str) -> None:
        try:
            self.locale = Locale.parse(locale)
        except (ValueError, UnknownLocaleError):
            raise InvoicingError(f"organization.locale: unknown locale {locale!r}") from None
        self.currency = currency
        self.minor_units = get_currency_precision(currency)

    def money(self, value: Decimal, digits: int | None = None) -> str:
        """Amounts at the currency's minor unit (JPY none, EUR two), the locale's pattern."""
        pattern = copy.copy(self.locale.currency_formats["standard"])
        places = self.minor_units if digits is None else digits
        pattern.frac_prec = (places, places)
        text = pattern.apply(value, self.locale, currency=self.currency, currency_digits=False)
        # The fullwidth yen sign of ja_JP has no glyph in common PDF fonts; U+00A5 is the
        # same sign in every invoice font.
        return text.replace("\uffe5", "\u00a5")

    def unit_price(self, value: Decimal) -> str:
        """Unit prices keep their significant decimals (up to 6), at least the currency's."""
        exponent = value.normalize().as_tuple().exponent
        decimals = -exponent if isinstance(exponent, int) and exponent < 0 else 0
        return self.money(value, max(self.minor_units, min(decimals, 6)))

    def quantity(self, value: Decimal) -> str:
        return format_decimal(value.normalize(), locale=self.locale, decimal_quantization=False)

    def percent(self, value: Decimal) -> str:
        return format_percent(value.normalize(), locale=self.locale, decimal_quantization=False)

    def date(self, value: datetime) -> str:
        return format_date(value.date(), "medium", locale=self.locale)

    def period(self, start: datetime | None, end: datetime | None) -> str:
        if start is None or end is None:
            return ""
        return f"{self.date(start)} \u2013 {self.date(end)}"


def customer_address_lines(billing_address: dict[str, Any]) -> list[str]:
    """Street lines, `City, Region Postcode`, country; unknown keys follow as given."""
    get = {k: str(billing_address.get(k) or "").strip() for k in ADDRESS_ORDER}
    locality = ", ".join(part for part in (get["city"], get["region"]) if part)
    locality = " ".join(part for part in (locality, get["postal_code"]) if part)
    lines = [get["line1"], get["line2"], locality, get["country"]]
    extra = [str(v) for k, v in billing_address.items() if k not in ADDRESS_ORDER and v]
    return [line for line in lines if line] + extra


def load_documents(
    conn: Connection, invoice_ids: list[int], seller: Seller
) -> list[dict[str, Any]]:
    """Template contexts for finalized invoices, in the order of `invoice_ids` (batched reads)."""
    if not invoice_ids:
        return []
    heads = {
        row["id"]: row
        for row in conn.execute(
            sa.select(
                invoices,
                organizations.c.name.label("org_name"),
                organizations.c.email.label("org_email"),
                organizations.c.external_id.label("org_external_id"),
                organizations.c.locale,
                organizations.c.billing_address,
                organizations.c.tax_jurisdiction,
                subscriptions.c.external_id.label("subscription_external_id"),
            )
            .join(organizations, organizations.c.id == invoices.c.organization_id)
            .join(subscriptions, subscriptions.c.id == invoices.c.subscription_id)
            .where(invoices.c.id.in_(invoice_ids))
        ).mappings()
    }
    lines = defaultdict(list)
    adjusted = invoices.alias("adjusted")
    for row in conn.execute(
        sa.select(invoice_line_items, adjusted.c.number.label("adjusts_number"))
        .outerjoin(adjusted, adjusted.c.id == invoice_line_items.c.adjusts_invoice_id)
        .where(invoice_line_items.c.invoice_id.in_(invoice_ids))
        .order_by(invoice_line_items.c.invoice_id, invoice_line_items.c.line_number)
    ).mappings():
        lines[row["invoice_id"]].append(row)
    applied = defaultdict(list)
    grant = credits.alias("grant")
    for row in conn.execute(
        sa.select(credits.c.invoice_id, credits.c.amount, grant.c.description, grant.c.credit_type)
        .join(grant, grant.c.id == credits.c.grant_id)
        .where(credits.c.invoice_id.in_(invoice_ids), credits.c.entry_type == "application")
        .order_by(credits.c.invoice_id, credits.c.id)
    ).mappings():
        applied[row["invoice_id"]].append(row)
    documents = []
    for invoice_id in invoice_ids:
        head = heads.get(invoice_id)
        if head is None or head["number"] is None:
            raise InvoicingError(f"invoice_id: {invoice_id} is not a finalized invoice")
        documents.append(_context(head, lines[invoice_id], applied[invoice_id], seller))
    return documents


def _context(head: Any, lines: list[Any], applied: list[Any], seller: Seller) -> dict[str, Any]:
    currency = head["currency"].strip()
    fmt = Formatter(currency, head["locale"])
    return {
        "number": head["number"],
        "status": head["status"],
        "stamp": STATUS_STAMPS.get(head["status"], ""),
        "currency": currency,
        "lang": fmt.locale.language,
        "created": head["issued_at"].isoformat(),
        "issue_date": fmt.date(head["issued_at"]),
        "due_date": fmt.date(head["due_at"]),
        "service_period": fmt.period(head["period_start"], head["period_end"]),
        "seller": {
            "name": seller.name,
            "address": seller.address_lines,
            "tax_id": seller.tax_id,
        },
        "customer": {
            "name": head["org_name"],
            "email": head["org_email"] or "",
            "account": head["org_external_id"],
            "subscription": head["subscription_external_id"],
            "address": customer_address_lines(head["billing_address"] or {}),
            "tax_jurisdiction": head["tax_jurisdiction"] or "",
        },
        "lines": [
            {
                "number": line["line_number"],
                "description": line["description"],
                "period": fmt.period(line["period_start"], line["period_end"]),
                "quantity": fmt.quantity(line["quantity"]),
                "unit_price": (
                    fmt.unit_price(line["unit_amount"]) if line["unit_amount"] is not None else ""
                ),
                "amount": fmt.money(line["amount"]),
                "adjusts": line["adjusts_number"] or "",
                "tiers": [
                    {
                        "tier": tier.get("tier"),
                        "quantity": fmt.quantity(Decimal(str(tier.get("quantity", "0")))),
                        "unit_price": fmt.unit_price(
                            Decimal(str(tier.get("unit_amount", tier.get("unit_price", "0"))))
                        ),
                        "amount": fmt.money(Decimal(str(tier.get("amount", "0")))),
                    }
                    for tier in line["tier_detail"] or []
                ],
            }
            for line in lines
        ],
        "subtotal": fmt.money(head["subtotal"]),
        "discount": fmt.money(-head["discount"]) if head["discount"] else "",
        "tax_label": f"Tax ({fmt.percent(head['tax_rate'] or Decimal(0))})",
        "tax": fmt.money(head["tax"]),
        "total": fmt.money(head["total"]),
        "credits": [
            {"description": row["description"] or "Credit", "amount": fmt.money(row["amount"])}
            for row in applied
        ],
        "amount_due": fmt.money(head["amount_due"]),
        "paid_date": fmt.date(head["paid_at"]) if head["paid_at"] else "",
        "void_reason": head["void_reason"] or "",
        "payment_instructions": seller.payment_instructions,
    }


def preview_lines(conn: Connection, draft: DraftInvoice) -> list[str]:
    """A draft as plain text for the terminal, formatted like its PDF will be."""
    locale = conn.scalar(
        sa.select(organizations.c.locale).where(organizations.c.id == draft.organization_id)
    )
    fmt = Formatter(draft.currency, locale or "en_US")
    out = [
        f"Upcoming invoice for {draft.organization_external_id} "
        f"({draft.subscription_external_id}), {draft.currency}",
        f"  billing date {fmt.date(draft.billing_date)}, "
        f"service period {fmt.period(draft.period_start, draft.period_end)}",
        "",
    ]
    for line in draft.lines:
        unit = f" x {fmt.unit_price(line.unit_amount)}" if line.unit_amount is not None else ""
        out.append(
            f"  {line.line_number:>2}  {line.description:<40} "
            f"{fmt.quantity(line.quantity) + unit:>24} {fmt.money(line.amount):>16}"
        )
    totals = [("Subtotal", fmt.money(draft.subtotal))]
    if draft.discount:
        totals.append(("Discount", fmt.money(-draft.discount)))
    totals += [(f"Tax ({fmt.percent(draft.tax_rate)})", fmt.money(draft.tax))]
    totals += [("Total", fmt.money(draft.total))]
    if draft.credits_applied:
        totals.append(("Credits", fmt.money(-draft.credits_applied)))
    totals.append(("Amount due", fmt.money(draft.amount_due)))
    out.append("")
    out += [f"  {label:>66} {value:>16}" for label, value in totals]
    return out
