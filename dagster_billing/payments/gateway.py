"""What the payments code needs from Stripe, as a Protocol and plain values.

`resources/stripe.py` implements it with the official SDK; nothing else imports
`stripe`. Errors are split by what the caller may conclude: a decline is final for
that attempt, a rejection is a bug or bad input, and an unknown outcome must be looked
up later, never retried blindly.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol


@dataclass(frozen=True)
class Intent:
    """A PaymentIntent as we read it: amount in the currency's minor unit."""

    id: str
    status: str
    amount: int
    currency: str
    customer: str | None
    metadata: Mapping[str, str] = field(default_factory=dict)
    failure_code: str | None = None
    decline_code: str | None = None
    failure_message: str | None = None
    created: datetime | None = None


@dataclass(frozen=True)
class CardDetails:
    id: str
    customer: str | None
    kind: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None


@dataclass(frozen=True)
class RefundResult:
    id: str
    status: str
    amount: int


class GatewayDeclinedError(Exception):
    """Stripe refused the charge (a card error): the attempt failed, with its codes."""

    def __init__(
        self,
        code: str | None,
        decline_code: str | None,
        message: str,
        intent: Intent | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.decline_code = decline_code
        self.message = message
        self.intent = intent


class GatewayRejectedError(Exception):
    """A final 4xx other than a decline (bad parameters, missing object)."""


class GatewayUnknownError(Exception):
    """No answer we can trust (timeout, connection lost, 5xx or 429 after retries): the
    request may or may not have been carried out."""


class PaymentGateway(Protocol):
    def create_customer(
        self, *, name: str, email: str | None, metadata: Mapping[str, str], idempotency_key: str
    ) -> str: ...

    def payment_method(self, payment_method_id: str) -> CardDetails: ...

    def attach_payment_method(self, payment_method_id: str, customer: str) -> CardDetails: ...

    def setup_intent_payment_method(self, setup_intent_id: str) -> str: ...

    def set_default_payment_method(self, customer: str, payment_method_id: str) -> None: ...

    def create_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        customer: str,
        payment_method: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> Intent: ...

    def retrieve_payment_intent(self, intent_id: str) -> Intent: ...

    def cancel_payment_intent(self, intent_id: str) -> Intent: ...

    def find_payment_intents(
        self, *, metadata_key: str, metadata_value: str, customer: str | None, since: datetime
    ) -> list[Intent]: ...

    def create_refund(
        self,
        *,
        payment_intent: str,
        amount: int,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> RefundResult: ...

    def find_refunds(
        self, *, payment_intent: str, metadata_key: str, metadata_value: str
    ) -> list[RefundResult]: ...
