"""The draft-invoice marts as plain tables (the contract of docs/invoice-marts.md, no dbt)
and a small builder for organizations, subscriptions, grants and hand-written drafts."""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from itertools import count

import pytest
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing import customers
from dagster_billing.invoicing.finalize import FinalizeResult, finalize_window
from dagster_billing.invoicing.marts import CONTRACT_DDL

MINOR = {"JPY": Decimal(1)}


@dataclass(frozen=True)
class Line:
    description: str
    amount: Decimal
    kind: str = "subscription_fee"
    quantity: Decimal = Decimal(1)
    unit_amount: Decimal | None = None
    metric: str | None = None
    tier_detail: tuple[dict[str, str], ...] = ()
    adjusts_invoice_key: str | None = None


@dataclass(frozen=True)
class Customer:
    organization_id: int
    organization_external_id: str
    subscription_id: int
    subscription_external_id: str
    currency: str


def day(month: int, dom: int, year: int = 2026) -> datetime:
    return datetime(year, month, dom, tzinfo=UTC)


class Billing:
    """Writes the rows a test needs; every organization gets a fresh unique id."""

    _ids = count(1)

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def customer(
        self,
        currency: str = "USD",
        locale: str = "en_US",
        name: str = "Acme Corp",
        address: dict[str, str] | None = None,
    ) -> Customer:
        n = next(self._ids)
        external = f"org-{n}-{currency.lower()}"
        with self.engine.begin() as conn:
            org_id = customers.create_organization(
                conn,
                external_id=external,
                name=name,
                email=f"billing@{external}.example",
                currency=currency,
                locale=locale,
                billing_address=address or {"line1": "1 Main Street", "city": "Springfield"},
                actor="test",
            )["id"]
            sub_id = customers.create_subscription(
                conn,
                organization=external,
                plan="starter",
                seats=5,
                start=day(1, 1),
                external_id=f"sub-{external}",
                actor="test",
            )["id"]
        return Customer(org_id, external, sub_id, f"sub-{external}", currency)

    def grant(self, customer: Customer, amount: str, credit_type: str = "prepaid") -> int:
        with self.engine.begin() as conn:
            return conn.execute(
                sa.text(
                    "insert into dictamesh_billing_credits (organization_id, entry_type,"
                    " credit_type, amount, currency, description)"
                    " values (:o, 'grant', :t, :a, :c, 'Prepaid credit') returning id"
                ),
                {
                    "o": customer.organization_id,
                    "t": credit_type,
                    "a": Decimal(amount),
                    "c": customer.currency,
                },
            ).scalar_one()

    def draft(
        self,
        customer: Customer,
        billing_date: datetime,
        lines: Sequence[Line],
        *,
        discount: str = "0",
        tax_rate: str = "0.10",
        credits: Sequence[tuple[int | None, str] | tuple[None, str, str]] = (),
        balance_credit: str = "0",
        sequence: int = 1,
    ) -> str:
        """One draft as dbt would publish it: rounded lines, tax, total, credits, due."""
        key = f"{customer.subscription_external_id}/{billing_date.isoformat()}"
        quantum = MINOR.get(customer.currency, Decimal("0.01"))
        subtotal = sum((line.amount for line in lines), Decimal(0))
        taxable = max(Decimal(0), subtotal - Decimal(discount))
        tax = (taxable * Decimal(tax_rate)).quantize(quantum, ROUND_HALF_UP)
        total = taxable + tax
        applied = sum((Decimal(credit[1]) for credit in credits), Decimal(0))
        period_end = billing_date + timedelta(days=30)
        with self.engine.begin() as conn:
            conn.execute(
                sa.text(
                    "insert into analytics.fct_invoices values (:key, :sid, :sext, :oid, :oext,"
                    " :bd, :bd, :pe, :seq, :cur, :sub, :disc, :rate, :tax, :total, :applied,"
                    " :due, :bal)"
                ),
                {
                    "key": key,
                    "sid": customer.subscription_id,
                    "sext": customer.subscription_external_id,
                    "oid": customer.organization_id,
                    "oext": customer.organization_external_id,
                    "bd": billing_date,
                    "pe": period_end,
                    "seq": sequence,
                    "cur": customer.currency,
                    "sub": subtotal,
                    "disc": Decimal(discount),
                    "rate": Decimal(tax_rate),
                    "tax": tax,
                    "total": total,
                    "applied": applied,
                    "due": total - applied,
                    "bal": Decimal(balance_credit),
                },
            )
            for number, line in enumerate(lines, start=1):
                conn.execute(
                    sa.text(
                        "insert into analytics.fct_invoice_line_items values (:key, :n, :kind,"
                        " :desc, :metric, :qty, :unit, :amount, :ps, :pe,"
                        " cast(:tiers as jsonb), :adj)"
                    ),
                    {
                        "key": key,
                        "n": number,
                        "kind": line.kind,
                        "desc": line.description,
                        "metric": line.metric,
                        "qty": line.quantity,
                        "unit": line.unit_amount,
                        "amount": line.amount,
                        "ps": billing_date,
                        "pe": period_end,
                        "tiers": json.dumps(list(line.tier_detail)),
                        "adj": line.adjusts_invoice_key,
                    },
                )
            for credit_id, amount, *balance_of in credits:
                conn.execute(
                    sa.text(
                        "insert into analytics.fct_invoice_credit_applications"
                        " values (:key, :cid, :amount, :balance_of)"
                    ),
                    {
                        "key": key,
                        "cid": credit_id,
                        "amount": Decimal(amount),
                        "balance_of": balance_of[0] if balance_of else None,
                    },
                )
        return key

    def finalize(self, start: datetime, prefix: str = "INV-", due_days: int = 30) -> FinalizeResult:
        with self.engine.begin() as conn:
            return finalize_window(
                conn, start, start + timedelta(days=1), prefix=prefix, due_days=due_days
            )

    def invoice(self, key: str) -> dict[str, object]:
        with self.engine.connect() as conn:
            return dict(
                conn.execute(
                    sa.text("select * from dictamesh_billing_invoices where invoice_key = :k"),
                    {"k": key},
                )
                .mappings()
                .one()
            )


@pytest.fixture(scope="module")
def billing(engine: Engine) -> Iterator[Billing]:
    """The marts relations exist in this module's database, empty until a test fills them."""
    with engine.begin() as conn:
        conn.execute(sa.text(CONTRACT_DDL))
    yield Billing(engine)
