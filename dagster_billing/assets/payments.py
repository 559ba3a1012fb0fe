"""The `payments` asset: charge open invoices through Stripe, after finalization.

Daily-partitioned like `invoices_finalized`, but what it charges is every invoice due
*now* (first attempts and dunning retries), whichever day issued it: charging is about
the present state, and each invoice's attempt row makes a re-run a no-op.
"""

from datetime import UTC, datetime

import dagster as dg

from dagster_billing.assets.invoicing import check_result, invoices_finalized
from dagster_billing.partitions import daily_partitions
from dagster_billing.payments.charging import charge_due_invoices
from dagster_billing.payments.checks import invoices_paid_twice, paid_invoices_without_payment
from dagster_billing.resources import WarehouseResource
from dagster_billing.resources.stripe import StripeResource


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=dg.BackfillPolicy.single_run(),
    group_name="payments",
    deps=[invoices_finalized],
    kinds={"stripe", "postgres"},
)
def payments(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, stripe: StripeResource
) -> dg.MaterializeResult:
    """Charge each open invoice with money due to its default payment method, off-session;
    only with STRIPE_ENABLED and FEATURE_AUTO_PAYMENT."""
    if not stripe.charging:
        context.log.info("payments skipped: STRIPE_ENABLED or FEATURE_AUTO_PAYMENT is off")
        return dg.MaterializeResult(metadata={"skipped": True})
    summary = charge_due_invoices(
        warehouse.engine(),
        stripe.gateway(),
        now=datetime.now(UTC),
        retry_days=stripe.retry_days,
        workers=stripe.charge_workers,
    )
    return dg.MaterializeResult(
        metadata={
            "attempted": len(summary.outcomes) - summary.count("skipped"),
            "succeeded": summary.count("succeeded"),
            "failed": summary.count("failed"),
            "requires_action": summary.count("requires_action"),
            "unknown": summary.count("unknown"),
        }
    )


@dg.asset_check(asset=payments, description="no invoice has two succeeded payments")
def no_invoice_paid_twice(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.engine().connect() as conn:
        return check_result(invoices_paid_twice(conn), "invoices_paid_twice")


@dg.asset_check(
    asset=payments, description="every paid invoice has a succeeded or a manual payment"
)
def paid_invoices_have_a_payment(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.engine().connect() as conn:
        return check_result(paid_invoices_without_payment(conn), "paid_without_payment")


payments_assets = [payments]
payments_checks = [no_invoice_paid_twice, paid_invoices_have_a_payment]
