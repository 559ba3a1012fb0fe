"""The settings the dbt pricing rules read, as a resource: assets never read the environment."""

from __future__ import annotations

from datetime import datetime

import dagster as dg

from dagster_billing.settings import Settings


class RatingResource(dg.ConfigurableResource):
    """INVOICE_TAX_RATE, FEATURE_TIERED_PRICING and FEATURE_CREDITS, passed to dbt as vars."""

    default_tax_rate: str = "0.10"
    tiered_pricing: bool = True
    credits_enabled: bool = True

    @classmethod
    def from_settings(cls, settings: Settings) -> RatingResource:
        return cls(
            default_tax_rate=str(settings.invoice_tax_rate),
            tiered_pricing=settings.feature_tiered_pricing,
            credits_enabled=settings.feature_credits,
        )

    def dbt_vars(self) -> dict[str, str]:
        """The settings as dbt vars: the same every run, so dbt's partial parsing holds."""
        return {
            "default_tax_rate": self.default_tax_rate,
            "tiered_pricing": str(self.tiered_pricing).lower(),
            "credits_enabled": str(self.credits_enabled).lower(),
        }


def window_env(window_start: datetime, window_end: datetime) -> dict[str, str]:
    """The billing dates a run builds, [start, end), as the environment dbt reads."""
    return {
        "BILLING_WINDOW_START": window_start.isoformat(),
        "BILLING_WINDOW_END": window_end.isoformat(),
    }
