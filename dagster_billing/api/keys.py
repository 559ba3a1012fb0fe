"""API keys: shown once, stored as a sha256 hash, looked up by a visible prefix.

A key reads `dmb_<prefix>_<secret>`: the prefix (12 characters) is kept in clear so
support can tell keys apart, the secret carries 256 random bits, so a fast hash is as
safe as a slow one and costs nothing per request.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.customers import CustomerError, NotFoundError, get_organization
from dagster_billing.warehouse import audit
from dagster_billing.warehouse.schema import api_keys, organizations

ROLES = ("admin", "finance", "org_member", "service")
ORGANIZATION_ROLES = ("org_member", "service")
KEY_PREFIX = "dmb_"
# last_used_at is written at most this often per key, so reads stay reads
LAST_USED_RESOLUTION_SECONDS = 60


@dataclass(frozen=True)
class ApiKey:
    id: int
    prefix: str
    role: str
    organization_id: int | None
    organization: str | None

    @property
    def actor(self) -> str:
        """How the audit log names this caller."""
        return f"api-key:{self.id}:{self.prefix}"

    @property
    def sees_all(self) -> bool:
        return self.role not in ORGANIZATION_ROLES


def _hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_key(
    conn: Connection, *, role: str, actor: str, organization: str | None = None, name: str = ""
) -> tuple[str, dict[str, Any]]:
    """A new key; returns (the key, shown only now, and its stored row without the hash)."""
    if role not in ROLES:
        raise CustomerError("role", f"must be one of {', '.join(ROLES)}")
    org_id = None
    if role in ORGANIZATION_ROLES:
        if organization is None:
            raise CustomerError("org", f"role {role!r} needs an organization")
        org_id = get_organization(conn, organization)["id"]
    elif organization is not None:
        raise CustomerError("org", f"role {role!r} sees every organization; give no --org")
    prefix = secrets.token_hex(6)
    token = f"{KEY_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
    row = (
        conn.execute(
            sa.insert(api_keys)
            .values(
                prefix=prefix, key_hash=_hash(token), role=role, organization_id=org_id, name=name
            )
            .returning(api_keys.c.id, api_keys.c.prefix, api_keys.c.role, api_keys.c.created_at)
        )
        .mappings()
        .one()
    )
    audit.record(
        conn,
        actor=actor,
        action="api_key.created",
        entity_type="api_key",
        entity_id=prefix,
        payload={"role": role, "organization": organization, "name": name},
    )
    return token, {**row, "organization": organization, "name": name}


def revoke_key(conn: Connection, prefix: str, *, actor: str) -> None:
    revoked = conn.execute(
        sa.update(api_keys)
        .where(api_keys.c.prefix == prefix, api_keys.c.revoked_at.is_(None))
        .values(revoked_at=sa.func.now())
        .returning(api_keys.c.id)
    ).first()
    if revoked is None:
        raise NotFoundError("api key", prefix)
    audit.record(
        conn, actor=actor, action="api_key.revoked", entity_type="api_key", entity_id=prefix
    )


def list_keys(conn: Connection) -> list[dict[str, Any]]:
    return [
        dict(r)
        for r in conn.execute(
            sa.select(
                api_keys.c.prefix,
                api_keys.c.role,
                organizations.c.external_id.label("organization"),
                api_keys.c.name,
                api_keys.c.created_at,
                api_keys.c.last_used_at,
                api_keys.c.revoked_at,
            )
            .outerjoin(organizations, organizations.c.id == api_keys.c.organization_id)
            .order_by(api_keys.c.id)
        ).mappings()
    ]


_LOOKUP = sa.text(
    """
    select k.id, k.prefix, k.key_hash, k.role, k.organization_id, o.external_id as organization,
           k.last_used_at is null
               or k.last_used_at < now() - make_interval(secs => :resolution) as stale
    from dictamesh_billing_api_keys k
    left join dictamesh_billing_organizations o on o.id = k.organization_id
    where k.prefix = :prefix and k.revoked_at is null
    """
)


def authenticate(conn: Connection, token: str, now: datetime | None = None) -> ApiKey | None:
    """The live key `token` is, or None (unknown, malformed or revoked alike)."""
    if not token.startswith(KEY_PREFIX) or len(token) > 200:
        return None
    prefix, _, secret = token[len(KEY_PREFIX) :].partition("_")
    if not secret or not prefix.isalnum():
        return None
    row = conn.execute(
        _LOOKUP, {"prefix": prefix, "resolution": LAST_USED_RESOLUTION_SECONDS}
    ).one_or_none()
    if row is None or not hmac.compare_digest(row.key_hash, _hash(token)):
        return None
    if row.stale:
        conn.execute(
            sa.update(api_keys)
            .where(api_keys.c.id == row.id)
            .values(last_used_at=now or datetime.now(UTC))
        )
    return ApiKey(row.id, row.prefix, row.role, row.organization_id, row.organization)
