"""Organizations: create, update, read (by external id, the id callers know)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection

from dagster_billing.customers.catalog import require_currency
from dagster_billing.customers.errors import CustomerError, NotFoundError
from dagster_billing.warehouse import audit
from dagster_billing.warehouse.schema import organizations, subscriptions

EXTERNAL_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
# Fields an update may change; currency only while no subscription bills in it.
UPDATABLE = (
    "name",
    "email",
    "currency",
    "locale",
    "tax_rate",
    "tax_exempt",
    "tax_jurisdiction",
    "billing_address",
    "status",
    "metadata",
)
STATUSES = ("active", "suspended", "closed")


def _jsonable(values: Mapping[str, Any]) -> dict[str, Any]:
    """Audit payloads hold text for decimals and datetimes, so the hash is stable."""
    return {
        k: (str(v) if isinstance(v, Decimal) or hasattr(v, "isoformat") else v)
        for k, v in values.items()
    }


def check_external_id(value: str, field: str = "external_id") -> str:
    if not isinstance(value, str) or not EXTERNAL_ID.match(value):
        raise CustomerError(
            field, "must be 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def _check_tax_rate(value: Decimal | None) -> None:
    if value is not None and not (value.is_finite() and Decimal(0) <= value < 1):
        raise CustomerError("tax_rate", f"must be >= 0 and < 1, got {value}")


def get_organization(conn: Connection, external_id: str) -> dict[str, Any]:
    row = (
        conn.execute(sa.select(organizations).where(organizations.c.external_id == external_id))
        .mappings()
        .one_or_none()
    )
    if row is None:
        raise NotFoundError("organization", external_id)
    return {**row, "currency": row["currency"].strip()}


def create_organization(
    conn: Connection,
    *,
    external_id: str,
    name: str,
    currency: str,
    actor: str,
    email: str | None = None,
    locale: str = "en_US",
    tax_rate: Decimal | None = None,
    tax_exempt: bool = False,
    tax_jurisdiction: str | None = None,
    billing_address: Mapping[str, Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A new organization; CustomerError if the external id is taken or a value is bad."""
    check_external_id(external_id)
    if not name.strip():
        raise CustomerError("name", "must not be empty")
    require_currency(conn, currency)
    _check_tax_rate(tax_rate)
    values = {
        "external_id": external_id,
        "name": name,
        "email": email,
        "currency": currency,
        "locale": locale,
        "tax_rate": tax_rate,
        "tax_exempt": tax_exempt,
        "tax_jurisdiction": tax_jurisdiction,
        "billing_address": dict(billing_address or {}),
        "metadata": dict(metadata or {}),
    }
    created = conn.execute(
        insert(organizations)
        .values(**values)
        .on_conflict_do_nothing(index_elements=["external_id"])
        .returning(organizations.c.id)
    ).first()
    if created is None:
        raise CustomerError("external_id", f"organization {external_id!r} already exists")
    audit.record(
        conn,
        actor=actor,
        action="organization.created",
        entity_type="organization",
        entity_id=external_id,
        payload=_jsonable({k: v for k, v in values.items() if v is not None}),
    )
    return get_organization(conn, external_id)


def update_organization(
    conn: Connection, external_id: str, changes: Mapping[str, Any], *, actor: str
) -> dict[str, Any]:
    """Change the given fields (others stay); an empty change is a no-op, not audited."""
    unknown = sorted(set(changes) - set(UPDATABLE))
    if unknown:
        raise CustomerError(unknown[0], "not a field an update may change")
    current = get_organization(conn, external_id)
    if "name" in changes and not str(changes["name"] or "").strip():
        raise CustomerError("name", "must not be empty")
    if "status" in changes and changes["status"] not in STATUSES:
        raise CustomerError("status", f"must be one of {', '.join(STATUSES)}")
    if "tax_rate" in changes:
        _check_tax_rate(changes["tax_rate"])
    if "currency" in changes and changes["currency"] != current["currency"]:
        require_currency(conn, changes["currency"])
        has_subscriptions = conn.scalar(
            sa.select(sa.func.count())
            .select_from(subscriptions)
            .where(subscriptions.c.organization_id == current["id"])
        )
        if has_subscriptions:
            raise CustomerError("currency", "cannot change once the organization has subscriptions")
    changed = {k: v for k, v in changes.items() if current[k] != v}
    if not changed:
        return current
    conn.execute(
        sa.update(organizations)
        .where(organizations.c.id == current["id"])
        .values(**changed, updated_at=sa.func.now())
    )
    audit.record(
        conn,
        actor=actor,
        action="organization.updated",
        entity_type="organization",
        entity_id=external_id,
        payload=_jsonable(changed),
    )
    return get_organization(conn, external_id)
