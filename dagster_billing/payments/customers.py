"""Stripe customers (one per organization, created once) and payment methods.

Payment methods arrive only as Stripe ids (`pm_...`) or a confirmed SetupIntent
(`seti_...`); card numbers never reach us. A request that carries anything that looks
like one (13-19 digits passing Luhn) is refused before any field is used, and the error
names the field, never the digits.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from dagster_billing.payments import PaymentError
from dagster_billing.payments.attempts import row_stamp
from dagster_billing.payments.gateway import CardDetails, PaymentGateway
from dagster_billing.warehouse.schema import organizations, payment_methods

# Digits with optional single spaces or dashes between them, as people type card numbers.
_DIGIT_RUN = re.compile(r"\d(?:[ -]?\d){12,30}")


def luhn_ok(digits: str) -> bool:
    total = 0
    for position, char in enumerate(reversed(digits)):
        value = int(char)
        if position % 2 == 1:
            value = value * 2 - 9 if value > 4 else value * 2
        total += value
    return total % 10 == 0


def _looks_like_card(text: str) -> bool:
    for match in _DIGIT_RUN.finditer(text):
        digits = re.sub(r"\D", "", match.group())
        for length in range(19, 12, -1):
            for start in range(len(digits) - length + 1):
                if luhn_ok(digits[start : start + length]):
                    return True
    return False


def card_number_fields(body: Any, path: str = "") -> list[str]:
    """Paths of every value in a request body that contains a possible card number."""
    if isinstance(body, Mapping):
        return [
            hit
            for key, value in body.items()
            for hit in card_number_fields(value, f"{path}.{key}" if path else str(key))
        ]
    if isinstance(body, list | tuple):
        return [hit for i, v in enumerate(body) for hit in card_number_fields(v, f"{path}[{i}]")]
    if isinstance(body, str | int) and _looks_like_card(str(body)):
        return [path or "body"]
    return []


def refuse_card_numbers(body: Any) -> None:
    """Raise before anything is stored or logged if the body carries a card number."""
    fields = card_number_fields(body)
    if fields:
        raise PaymentError(
            f"{fields[0]}: looks like a card number; card numbers are never accepted here, "
            "send a Stripe PaymentMethod id (pm_...) or SetupIntent id (seti_...)"
        )


def organization_id_for(conn: Connection, external_id: str) -> int:
    found = conn.scalar(
        sa.select(organizations.c.id).where(organizations.c.external_id == external_id)
    )
    if found is None:
        raise PaymentError(f"organization: no organization {external_id!r}")
    return found


def customer_idempotency_key(organization_id: int, created_at: datetime) -> str:
    return f"dmb-customer-{organization_id}-{row_stamp(created_at)}"


def ensure_customer(engine: Engine, gateway: PaymentGateway, organization_id: int) -> str:
    """The organization's Stripe customer, created on first use. The idempotency key comes
    from the organization id, so a crash between Stripe's answer and our update, retried,
    gets the same customer from Stripe (and the update keeps whichever id landed first)."""
    with engine.connect() as conn:
        org = (
            conn.execute(sa.select(organizations).where(organizations.c.id == organization_id))
            .mappings()
            .one_or_none()
        )
    if org is None:
        raise PaymentError(f"organization_id: no organization {organization_id}")
    if org["stripe_customer_id"]:
        return org["stripe_customer_id"]
    customer = gateway.create_customer(
        name=org["name"],
        email=org["email"],
        metadata={"organization_id": str(organization_id), "external_id": org["external_id"]},
        idempotency_key=customer_idempotency_key(organization_id, org["created_at"]),
    )
    with engine.begin() as conn:
        conn.execute(
            sa.update(organizations)
            .where(
                organizations.c.id == organization_id, organizations.c.stripe_customer_id.is_(None)
            )
            .values(stripe_customer_id=customer, updated_at=sa.func.now())
        )
        return conn.scalar(
            sa.select(organizations.c.stripe_customer_id).where(
                organizations.c.id == organization_id
            )
        )


@dataclass(frozen=True)
class PaymentMethodRecord:
    id: int
    organization_id: int
    stripe_payment_method_id: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    is_default: bool


def _record(row: Mapping[str, Any]) -> PaymentMethodRecord:
    return PaymentMethodRecord(
        row["id"],
        row["organization_id"],
        row["stripe_payment_method_id"],
        row["brand"],
        row["last4"].strip() if row["last4"] else None,
        row["exp_month"],
        row["exp_year"],
        row["is_default"],
    )


def add_payment_method(
    engine: Engine,
    gateway: PaymentGateway,
    organization_id: int,
    *,
    payment_method_id: str | None = None,
    setup_intent_id: str | None = None,
    make_default: bool = True,
) -> PaymentMethodRecord:
    """Attach a PaymentMethod (by id, or the one a succeeded SetupIntent collected) to the
    organization's customer and store it; the first one, or `make_default`, becomes default."""
    if (payment_method_id is None) == (setup_intent_id is None):
        raise PaymentError(
            "payment_method_id: give exactly one of payment_method_id, setup_intent_id"
        )
    refuse_card_numbers(
        {"payment_method_id": payment_method_id, "setup_intent_id": setup_intent_id}
    )
    if payment_method_id is not None and not payment_method_id.startswith("pm_"):
        raise PaymentError("payment_method_id: must be a Stripe PaymentMethod id (pm_...)")
    if setup_intent_id is not None and not setup_intent_id.startswith("seti_"):
        raise PaymentError("setup_intent_id: must be a Stripe SetupIntent id (seti_...)")
    customer = ensure_customer(engine, gateway, organization_id)
    method_id = payment_method_id or gateway.setup_intent_payment_method(str(setup_intent_id))
    card: CardDetails = gateway.payment_method(method_id)
    if card.customer != customer:
        card = gateway.attach_payment_method(card.id, customer)
    with engine.begin() as conn:
        conn.execute(
            sa.select(organizations.c.id)
            .where(organizations.c.id == organization_id)
            .with_for_update()
        )
        has_default = conn.scalar(
            sa.select(sa.func.count())
            .select_from(payment_methods)
            .where(
                payment_methods.c.organization_id == organization_id, payment_methods.c.is_default
            )
        )
        default = make_default or not has_default
        if default:
            conn.execute(
                sa.update(payment_methods)
                .where(payment_methods.c.organization_id == organization_id)
                .values(is_default=False)
            )
        stmt = insert(payment_methods).values(
            organization_id=organization_id,
            stripe_payment_method_id=card.id,
            kind=card.kind,
            brand=card.brand,
            last4=card.last4,
            exp_month=card.exp_month,
            exp_year=card.exp_year,
            is_default=default,
        )
        row = (
            conn.execute(
                stmt.on_conflict_do_update(
                    index_elements=["stripe_payment_method_id"],
                    set_={"is_default": stmt.excluded.is_default},
                    where=payment_methods.c.organization_id == organization_id,
                ).returning(*payment_methods.c)
            )
            .mappings()
            .one_or_none()
        )
        if row is None:
            raise PaymentError(f"payment_method_id: {card.id} belongs to another organization")
    if default:
        gateway.set_default_payment_method(customer, card.id)
    return _record(row)


def list_payment_methods(conn: Connection, organization_id: int) -> list[PaymentMethodRecord]:
    rows = conn.execute(
        sa.select(payment_methods)
        .where(payment_methods.c.organization_id == organization_id)
        .order_by(payment_methods.c.id)
    ).mappings()
    return [_record(row) for row in rows]


def default_payment_method(conn: Connection, organization_id: int) -> PaymentMethodRecord | None:
    row = (
        conn.execute(
            sa.select(payment_methods).where(
                payment_methods.c.organization_id == organization_id, payment_methods.c.is_default
            )
        )
        .mappings()
        .one_or_none()
    )
    return _record(row) if row else None
