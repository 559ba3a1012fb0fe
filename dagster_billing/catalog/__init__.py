"""The default catalog: one versioned YAML file, parsed into typed, validated objects.

Price books for other currencies are derived here (USD x factor, 6 decimals, half up)
so the file states each price once.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

DEFAULT_CATALOG = Path(__file__).with_name("default_catalog.yaml")
SIX_DECIMALS = Decimal("0.000001")


class CatalogError(Exception):
    """A catalog file that cannot be loaded, phrased as `field.path: what is wrong`."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Currency(_Strict):
    code: str = Field(pattern=r"^[A-Z]{3}$")
    minor_units: int = Field(ge=0, le=4)
    factor: Decimal = Field(gt=0)


class Metric(_Strict):
    id: str = Field(pattern=r"^[a-z_]+$")
    name: str
    unit: str
    unit_size: Decimal = Field(gt=0)
    aggregation: Literal["sum", "average"]


class Plan(_Strict):
    id: str = Field(pattern=r"^[a-z0-9_]+$")
    name: str
    monthly_fee: Decimal = Field(ge=0)
    annual_fee: Decimal = Field(ge=0)
    included_seats: int = Field(ge=0)
    seat_price_monthly: Decimal | None = Field(ge=0)
    max_adapters: int | None = Field(gt=0)
    bills_overage: bool
    quotas: dict[str, Decimal]


class Tier(_Strict):
    up_to: Decimal | None = Field(gt=0)
    unit_price: Decimal = Field(ge=0)


class ReportingFx(_Strict):
    valid_from: str
    usd_per_unit: dict[str, Decimal]


class Catalog(_Strict):
    version: str
    currencies: list[Currency]
    reporting_fx: ReportingFx
    metrics: list[Metric]
    plans: list[Plan]
    tiers: dict[str, list[Tier]]

    def price(self, usd_amount: Decimal, currency: Currency) -> Decimal:
        """A price-book amount in `currency`: USD x factor, rounded half up to 6 decimals."""
        return (usd_amount * currency.factor).quantize(SIX_DECIMALS, rounding=ROUND_HALF_UP)

    def check_references(self) -> None:
        """Quotas, tiers and FX must name known metrics and currencies, tiers must ascend."""
        metric_ids = {m.id for m in self.metrics}
        codes = {c.code for c in self.currencies}
        for plan in self.plans:
            if set(plan.quotas) != metric_ids:
                raise CatalogError(
                    f"plans.{plan.id}.quotas: must cover exactly {sorted(metric_ids)}"
                )
        if set(self.tiers) != metric_ids:
            raise CatalogError(f"tiers: must cover exactly {sorted(metric_ids)}")
        for metric, tiers in self.tiers.items():
            bounds = [t.up_to for t in tiers]
            if bounds[-1] is not None or None in bounds[:-1] or bounds[:-1] != sorted(bounds[:-1]):
                raise CatalogError(f"tiers.{metric}: bounds must ascend and only the last be open")
        if set(self.reporting_fx.usd_per_unit) != codes:
            raise CatalogError(f"reporting_fx.usd_per_unit: must cover exactly {sorted(codes)}")


def load_catalog(path: Path = DEFAULT_CATALOG) -> Catalog:
    """Parse and validate a catalog file."""
    try:
        catalog = Catalog.model_validate(yaml.safe_load(path.read_text()))
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(str(part) for part in error["loc"])
        raise CatalogError(f"{path.name}: {where}: {error['msg']}") from None
    catalog.check_references()
    return catalog


@lru_cache(maxsize=1)
def catalog_currencies() -> tuple[str, ...]:
    """Currencies with a price book in the default catalog."""
    return tuple(sorted(c.code for c in load_catalog().currencies))
