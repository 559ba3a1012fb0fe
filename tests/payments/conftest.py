"""Payments against real localstripe (through the idempotency/fault proxy) and Postgres.

Each test makes its own organization, Stripe customer and invoice on a billing day of
its own, so tests share the module database and the session's localstripe safely.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from itertools import count

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.invoicing.marts import CONTRACT_DDL
from dagster_billing.payments.customers import add_payment_method
from dagster_billing.resources.stripe import StripeApi
from tests.conftest import STRIPE_TEST_API_KEY
from tests.invoicing.conftest import Billing, Customer, Line
from tests.payments.stripe_proxy import StripeProxy

_days = count(0)


@pytest.fixture(scope="module")
def billing(engine: Engine) -> Billing:
    with engine.begin() as conn:
        conn.execute(sa.text(CONTRACT_DDL))
    return Billing(engine)


@pytest.fixture(scope="module")
def proxy(stripe_server: str) -> Iterator[StripeProxy]:
    with StripeProxy(stripe_server, hang_seconds=2.0).running() as running:
        yield running


class RecordingSleep:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def sleeps() -> RecordingSleep:
    return RecordingSleep()


@pytest.fixture
def gateway(proxy: StripeProxy, sleeps: RecordingSleep) -> StripeApi:
    """The product's gateway through the proxy; 429 back-off sleeps are recorded, not slept."""
    return StripeApi(STRIPE_TEST_API_KEY, api_base=proxy.url, timeout_seconds=1.0, sleep=sleeps)


@dataclass(frozen=True)
class OpenInvoice:
    id: int
    number: str
    customer: Customer
    amount_due: Decimal
    billed_on: datetime


@pytest.fixture
def open_invoice(billing: Billing, engine: Engine):
    """`open_invoice(payment_method="pm_card_visa", amount="100.00")`: a finalized, open
    invoice whose organization has that default payment method (None: no method)."""

    def make(
        payment_method: str | None = "pm_card_visa",
        amount: str = "100.00",
        currency: str = "USD",
        gateway: StripeApi | None = None,
    ) -> OpenInvoice:
        customer = billing.customer(currency=currency)
        billed_on = datetime(2030, 1, 1, tzinfo=UTC) + timedelta(days=next(_days))
        key = billing.draft(customer, billed_on, [Line("Pro plan", Decimal(amount))], tax_rate="0")
        billing.finalize(billed_on)
        invoice = billing.invoice(key)
        if payment_method is not None:
            assert gateway is not None
            add_payment_method(
                engine, gateway, customer.organization_id, payment_method_id=payment_method
            )
        return OpenInvoice(
            int(invoice["id"]),  # type: ignore[arg-type]
            str(invoice["number"]),
            customer,
            invoice["amount_due"],  # type: ignore[arg-type]
            billed_on,
        )

    return make


def payment_rows(engine: Engine, invoice_id: int) -> list[dict[str, object]]:
    with engine.connect() as conn:
        return [
            dict(row)
            for row in conn.execute(
                sa.text(
                    "select * from dictamesh_billing_payments where invoice_id = :i"
                    " order by attempt"
                ),
                {"i": invoice_id},
            ).mappings()
        ]


def invoice_status(engine: Engine, invoice_id: int) -> str:
    with engine.connect() as conn:
        return conn.scalar(
            sa.text("select status from dictamesh_billing_invoices where id = :i"),
            {"i": invoice_id},
        )


def outbox_types(engine: Engine, aggregate_ids: list[str]) -> list[str]:
    with engine.connect() as conn:
        return list(
            conn.scalars(
                sa.text(
                    "select event_type from dictamesh_billing_outbox"
                    " where aggregate_id = any(:ids) and (event_type like 'billing.payment.%'"
                    " or event_type = 'billing.invoice.paid') order by id"
                ),
                {"ids": aggregate_ids},
            )
        )


def intents_for(stripe_client, invoice_id: int, engine: Engine) -> list[dict[str, object]]:
    """Every PaymentIntent localstripe holds for the invoice: it lists without filters,
    and the session's modules reuse invoice ids, so match the customer too."""
    with engine.connect() as conn:
        customer = conn.scalar(
            sa.text(
                "select o.stripe_customer_id from dictamesh_billing_invoices i"
                " join dictamesh_billing_organizations o on o.id = i.organization_id"
                " where i.id = :i"
            ),
            {"i": invoice_id},
        )
    found, cursor = [], None
    while True:
        params = {"limit": 100, **({"starting_after": cursor} if cursor else {})}
        page = stripe_client.v1.payment_intents.list(params)
        found += [pi.to_dict() for pi in page.data]
        if not page.has_more:
            break
        cursor = page.data[-1].id
    return [
        pi
        for pi in found
        if pi["metadata"].get("dmb_invoice_id") == str(invoice_id) and pi["customer"] == customer
    ]
