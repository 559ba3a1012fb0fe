"""The write path for customers: organizations, subscriptions, price overrides, credits
and promotions. The demo, the tests and the HTTP API all write through these functions,
so every change lands in the tables dbt reads, the audit log and the outbox the same way.
"""

from dagster_billing.customers.credits import add_promotion, credit_balance, grant_credit
from dagster_billing.customers.errors import CustomerError, NotFoundError
from dagster_billing.customers.organizations import (
    create_organization,
    get_organization,
    update_organization,
)
from dagster_billing.customers.subscriptions import (
    cancel_subscription,
    change_subscription,
    create_subscription,
    get_subscription,
)

__all__ = [
    "CustomerError",
    "NotFoundError",
    "add_promotion",
    "cancel_subscription",
    "change_subscription",
    "create_organization",
    "create_subscription",
    "credit_balance",
    "get_organization",
    "get_subscription",
    "grant_credit",
    "update_organization",
]
