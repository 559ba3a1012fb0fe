"""The rating engine's Python side: the settings dbt reads, and running dbt on a window.

The pricing rules themselves live in dbt (dbt_project/models); this module only turns
settings and a billing window into dbt `--vars`, the one place both the Dagster assets
and `billing simulate` get them from.
"""

from __future__ import annotations

from datetime import datetime

from dagster_billing.settings import Settings


def dbt_vars(settings: Settings, window_start: datetime, window_end: datetime) -> dict[str, str]:
    """dbt bills the billing dates in [window_start, window_end) with these settings."""
    return {
        "window_start": window_start.isoformat(),
        "window_end": window_end.isoformat(),
        "default_tax_rate": str(settings.invoice_tax_rate),
        "tiered_pricing": str(settings.feature_tiered_pricing).lower(),
        "credits_enabled": str(settings.feature_credits).lower(),
    }
