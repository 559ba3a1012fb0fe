"""The settings the dbt pricing rules read, as a resource: assets never read the environment."""

from __future__ import annotations

import os
from datetime import datetime

import dagster as dg

from dagster_billing.settings import Settings

WINDOW_START_SETTING = "dictamesh.billing_window_start"
WINDOW_END_SETTING = "dictamesh.billing_window_end"


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


def window_options(window_start: datetime, window_end: datetime) -> dict[str, str]:
    """The billing dates a run builds, [start, end), as settings of every session dbt
    opens (libpq reads PGOPTIONS). The models read them at run time
    (macros/billing_window.sql); a var or an environment variable would be rendered into
    the parse, and each new window would make dbt parse those models again."""
    options = (
        f"-c {WINDOW_START_SETTING}={window_start.isoformat()}"
        f" -c {WINDOW_END_SETTING}={window_end.isoformat()}"
    )
    return {"PGOPTIONS": " ".join(filter(None, (os.environ.get("PGOPTIONS"), options)))}
