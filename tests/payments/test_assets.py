"""The `payments` asset: gated by STRIPE_ENABLED and FEATURE_AUTO_PAYMENT, then charges
what is due, with its checks passing."""

from __future__ import annotations

import dagster as dg
from sqlalchemy.engine import Engine

from dagster_billing.assets.payments import payments_assets, payments_checks
from dagster_billing.resources import WarehouseResource
from dagster_billing.resources.stripe import StripeResource
from dagster_billing.settings import load_settings
from dagster_billing.warehouse.database import Warehouse
from tests.conftest import STRIPE_TEST_API_KEY
from tests.payments.conftest import invoice_status


def _materialize(warehouse: Warehouse, stripe: StripeResource) -> dg.ExecuteInProcessResult:
    return dg.materialize(
        [*payments_assets, *payments_checks],
        resources={
            "warehouse": WarehouseResource(dsn=warehouse.libpq_url(), data_dir="unused"),
            "stripe": stripe,
        },
        partition_key="2026-06-01",
    )


def test_the_asset_charges_only_with_both_switches_on(
    engine: Engine, warehouse: Warehouse, gateway, open_invoice, proxy
) -> None:
    invoice = open_invoice(gateway=gateway)
    for enabled, auto in [(False, True), (True, False)]:
        stripe = StripeResource(
            api_key=STRIPE_TEST_API_KEY, api_base=proxy.url, enabled=enabled, auto_payment=auto
        )
        result = _materialize(warehouse, stripe)
        assert result.success
        (materialization,) = result.asset_materializations_for_node("payments")
        assert materialization.metadata["skipped"].value is True
        assert invoice_status(engine, invoice.id) == "open"

    stripe = StripeResource(
        api_key=STRIPE_TEST_API_KEY, api_base=proxy.url, enabled=True, auto_payment=True
    )
    result = _materialize(warehouse, stripe)

    assert result.success
    (materialization,) = result.asset_materializations_for_node("payments")
    assert materialization.metadata["succeeded"].value >= 1
    assert invoice_status(engine, invoice.id) == "paid"
    checks = result.get_asset_check_evaluations()
    assert {c.check_name for c in checks} == {
        "no_invoice_paid_twice",
        "paid_invoices_have_a_payment",
    }
    assert all(c.passed for c in checks)


def test_the_asset_charges_as_many_at_once_as_the_setting_says() -> None:
    assert StripeResource.from_settings(load_settings()).charge_workers == 8
    settings = load_settings(payment_charge_workers=3)
    assert StripeResource.from_settings(settings).charge_workers == 3
