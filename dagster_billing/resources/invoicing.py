"""Invoicing settings as a resource: numbering, due days, seller block, templates, PDF dir."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dagster_billing.invoicing.document import Seller
from dagster_billing.invoicing.pdf import DEFAULT_TEMPLATE_DIR
from dagster_billing.settings import Settings


class InvoicingResource(dg.ConfigurableResource):
    """Built from settings in `definitions.py`; assets never read the environment."""

    data_dir: str
    number_prefix: str = "INV-"
    due_days: int = 30
    template_dir: str | None = None
    seller_name: str
    seller_address: str
    seller_tax_id: str = ""
    payment_instructions: str
    pdf_workers: int = 1

    @classmethod
    def from_settings(cls, settings: Settings) -> InvoicingResource:
        return cls(
            data_dir=str(settings.billing_data_dir),
            number_prefix=settings.invoice_number_prefix,
            due_days=settings.invoice_due_days,
            template_dir=str(settings.invoice_template_dir)
            if settings.invoice_template_dir
            else None,
            seller_name=settings.invoice_seller_name,
            seller_address=settings.invoice_seller_address,
            seller_tax_id=settings.invoice_seller_tax_id,
            payment_instructions=settings.invoice_payment_instructions,
            pdf_workers=settings.invoice_pdf_workers,
        )

    @property
    def seller(self) -> Seller:
        return Seller(
            self.seller_name, self.seller_address, self.seller_tax_id, self.payment_instructions
        )

    @property
    def templates(self) -> Path:
        return Path(self.template_dir) if self.template_dir else DEFAULT_TEMPLATE_DIR
