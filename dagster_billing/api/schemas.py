"""Request and response bodies. Requests refuse unknown fields; money is a decimal
string (never a float); ids are the external ids callers chose, invoices by number id."""

from __future__ import annotations

import re
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field

EXTERNAL_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$"
# NUL cannot be stored in Postgres text: refused here, with the field named
Text = Annotated[str, Field(max_length=200, pattern=r"^[^\x00]*$")]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00]*\S[^\x00]*$")]
ExternalId = Annotated[str, Field(pattern=EXTERNAL_ID)]
Currency = Annotated[str, Field(pattern=r"^[A-Z]{3}$")]
Seats = Annotated[int, Field(ge=1, le=100_000)]
Money = Annotated[Decimal, Field(ge=0, max_digits=20, decimal_places=6, allow_inf_nan=False)]
PositiveMoney = Annotated[
    Decimal, Field(gt=0, max_digits=20, decimal_places=6, allow_inf_nan=False)
]
StringMap = Annotated[dict[Text, Text], Field(max_length=50)]


def _iso_only(value: Any) -> Any:
    """ISO 8601 text only: pydantic would also read a number as Unix seconds."""
    if isinstance(value, datetime):
        return value
    if not isinstance(value, str) or not re.match(r"^\d{4}-\d{2}-\d{2}T", value):
        raise ValueError("must be an ISO 8601 timestamp with a timezone, e.g. 2026-11-01T00:00:00Z")
    return value


def _plausible(value: datetime) -> datetime:
    if not 2000 <= value.year <= 2200:
        raise ValueError("year must be between 2000 and 2200")
    return value


Timestamp = Annotated[AwareDatetime, BeforeValidator(_iso_only), AfterValidator(_plausible)]


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class OrganizationCreate(Strict):
    external_id: ExternalId
    name: Name
    currency: Currency
    email: Text | None = None
    locale: Annotated[str, Field(pattern=r"^[a-z]{2}(_[A-Z]{2})?$")] = "en_US"
    tax_rate: Annotated[Decimal, Field(ge=0, lt=1, max_digits=9, decimal_places=6)] | None = None
    tax_exempt: bool = False
    tax_jurisdiction: Text | None = None
    billing_address: StringMap = {}
    metadata: StringMap = {}


class OrganizationUpdate(Strict):
    name: Name | None = None
    email: Text | None = None
    currency: Currency | None = None
    locale: Annotated[str, Field(pattern=r"^[a-z]{2}(_[A-Z]{2})?$")] | None = None
    tax_rate: Annotated[Decimal, Field(ge=0, lt=1, max_digits=9, decimal_places=6)] | None = None
    tax_exempt: bool | None = None
    tax_jurisdiction: Text | None = None
    billing_address: StringMap | None = None
    status: Literal["active", "suspended", "closed"] | None = None
    metadata: StringMap | None = None


class Organization(BaseModel):
    id: str
    name: str
    email: str | None
    currency: str
    locale: str
    tax_rate: str | None
    tax_exempt: bool
    tax_jurisdiction: str | None
    billing_address: dict[str, Any]
    status: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime


class SubscriptionCreate(Strict):
    organization: ExternalId
    plan: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")]
    seats: Seats = 1
    billing_cycle: Literal["monthly", "annual"] = "monthly"
    pricing_mode: Literal["graduated", "volume"] = "graduated"
    price_override: Money | None = None
    start: Timestamp | None = None
    external_id: ExternalId | None = None
    metadata: StringMap = {}


class SubscriptionChange(Strict):
    plan: Annotated[str, Field(pattern=r"^[a-z0-9_]{1,64}$")] | None = None
    seats: Seats | None = None
    effective_at: Timestamp | None = None


class SubscriptionCancel(Strict):
    at_period_end: bool = False
    at: Timestamp | None = None


class Change(BaseModel):
    effective_at: datetime
    plan: str | None
    seats: int | None
    reason: str


class Subscription(BaseModel):
    id: str
    organization: str
    plan: str
    seats: int
    initial_plan: str
    initial_seats: int
    billing_cycle: str
    pricing_mode: str
    price_override: str | None
    status: str
    started_at: datetime
    current_period_start: datetime | None
    current_period_end: datetime | None
    cancel_at: datetime | None
    canceled_at: datetime | None
    changes: list[Change]


class CreditGrant(Strict):
    amount: PositiveMoney
    credit_type: Literal["prepaid", "goodwill", "promotion"] = "prepaid"
    expires_at: Timestamp | None = None
    description: Text = ""


class Credit(BaseModel):
    id: int
    credit_type: str
    amount: str
    currency: str
    expires_at: datetime | None
    description: str


class PromotionCreate(Strict):
    code: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    percent_off: Annotated[Decimal, Field(gt=0, le=100, max_digits=9, decimal_places=6)] | None = (
        None
    )
    amount_off: PositiveMoney | None = None
    duration_periods: Annotated[int, Field(ge=1, le=1200)] | None = None


class Promotion(BaseModel):
    code: str
    position: int
    percent_off: str | None
    amount_off: str | None
    duration_periods: int | None


class CreditBalance(BaseModel):
    organization: str
    currency: str
    balance: str


class Entitlements(BaseModel):
    organization: str
    plan: str | None
    limits: dict[str, str | None]


class EntitlementCheck(BaseModel):
    limit: str
    requested: str
    allowed: str | None
    plan: str | None


class InvoiceLine(BaseModel):
    line_number: int
    kind: str
    description: str
    metric: str | None
    quantity: str
    unit_amount: str | None
    amount: str
    period_start: datetime | None
    period_end: datetime | None


class Invoice(BaseModel):
    id: int
    number: str | None
    organization: str
    subscription: str
    status: str
    currency: str
    period_start: datetime
    period_end: datetime
    subtotal: str
    discount: str
    tax: str
    total: str
    credits_applied: str
    amount_due: str
    issued_at: datetime | None
    due_at: datetime | None
    paid_at: datetime | None
    voided_at: datetime | None
    lines: list[InvoiceLine] | None = None


class InvoiceList(BaseModel):
    data: list[Invoice]
    has_more: bool


class InvoiceVoid(Strict):
    reason: Name


class UpcomingInvoice(BaseModel):
    subscription: str
    organization: str
    billing_date: datetime
    period_start: datetime
    period_end: datetime
    currency: str
    subtotal: str
    discount: str
    tax: str
    total: str
    credits_applied: str
    amount_due: str
    lines: list[InvoiceLine]


class PaymentCreate(Strict):
    """Charges the organization's default payment method (set by POST /payment-methods)."""

    invoice: Annotated[int, Field(ge=1, le=2**63 - 1)]


class Payment(BaseModel):
    id: int
    invoice: int
    invoice_number: str
    attempt: int
    provider: str
    status: str
    amount: str
    amount_refunded: str
    currency: str
    stripe_payment_intent_id: str | None
    failure_code: str | None
    decline_code: str | None
    failure_message: str | None
    reference: str | None
    next_retry_at: datetime | None
    created_at: datetime
    succeeded_at: datetime | None


class PaymentMethodCreate(Strict):
    organization: ExternalId
    stripe_payment_method_id: Annotated[str, Field(pattern=r"^pm_[A-Za-z0-9_]{1,100}$")]


class PaymentMethod(BaseModel):
    id: int
    organization: str
    stripe_payment_method_id: str
    brand: str | None
    last4: str | None
    exp_month: int | None
    exp_year: int | None
    is_default: bool


class RefundCreate(Strict):
    """Without `amount`, all that is still refundable on the payment's invoice."""

    amount: PositiveMoney | None = None
    reason: Name


class CreditNote(BaseModel):
    number: str
    invoice_number: str
    payment: int
    amount: str
    currency: str
    reason: str
    status: str
    stripe_refund_id: str | None


class MetricUsage(BaseModel):
    metric: str
    unit: str
    used: str
    quota: str | None
    percent_used: str | None


class CurrentUsage(BaseModel):
    organization: str
    plan: str | None
    period_start: datetime | None
    period_end: datetime | None
    metrics: list[MetricUsage]


class UsagePoint(BaseModel):
    metric: str
    start: datetime
    quantity: str


class UsageHistory(BaseModel):
    organization: str
    granularity: str
    start: datetime
    end: datetime
    data: list[UsagePoint]
