"""The eight notification templates and the event each one answers."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TemplateSpec:
    name: str
    event_type: str
    subject: str  # a Jinja expression over the same context as the body
    mandatory: bool = False  # cannot be opted out of (invoices)
    attach_invoice: bool = False


TEMPLATES: dict[str, TemplateSpec] = {
    spec.name: spec
    for spec in (
        TemplateSpec(
            "billing_invoice_generated",
            "billing.invoice.created",
            "Invoice {{ invoice.number }} for {{ invoice.total }}",
            mandatory=True,
            attach_invoice=True,
        ),
        TemplateSpec(
            "billing_payment_succeeded",
            "billing.payment.succeeded",
            "Payment received for invoice {{ invoice.number }}",
        ),
        TemplateSpec(
            "billing_payment_failed",
            "billing.payment.failed",
            "Payment for invoice {{ invoice.number }} failed",
        ),
        TemplateSpec(
            "billing_invoice_overdue",
            "billing.invoice.overdue",
            "Invoice {{ invoice.number }} is overdue",
            mandatory=True,
        ),
        TemplateSpec(
            "billing_subscription_created",
            "billing.subscription.created",
            "Welcome to DictaMesh {{ plan_name }}",
        ),
        TemplateSpec(
            "billing_subscription_canceled",
            "billing.subscription.canceled",
            "Your DictaMesh {{ plan_name }} subscription is canceled",
        ),
        TemplateSpec(
            "billing_usage_threshold_reached",
            "billing.usage.threshold_reached",
            "{{ metric_name }} at {{ threshold }}% of your {{ plan_name }} quota",
        ),
        TemplateSpec(
            "billing_upcoming_renewal",
            "billing.subscription.renewal_upcoming",
            "Your DictaMesh {{ plan_name }} plan renews on {{ renews_on }}",
        ),
    )
}

BY_EVENT_TYPE: dict[str, TemplateSpec] = {spec.event_type: spec for spec in TEMPLATES.values()}
