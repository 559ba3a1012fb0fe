"""Stripe webhooks: verified on the raw body, stored once, processed later.

`POST /webhooks/stripe` only verifies and stores (unique Stripe event id), so it answers
at once and a duplicate delivery is a no-op. The reconciliation sensor processes the
inbox: each payment event's PaymentIntent is re-read from Stripe before anything of ours
changes, so events may arrive in any order, any number of times.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.engine import Connection, Engine

from dagster_billing.payments.gateway import GatewayUnknownError, PaymentGateway
from dagster_billing.payments.reconcile import resolve_intent
from dagster_billing.warehouse.schema import stripe_webhook_events

TOLERANCE_SECONDS = 300
PAYMENT_INTENT_EVENTS = (
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.processing",
    "payment_intent.requires_action",
    "payment_intent.canceled",
)


class SignatureError(Exception):
    """The request is not a webhook from our Stripe account (or is too old or new)."""


def verify_signature(
    payload: bytes, header: str | None, secrets: Sequence[str], *, now: datetime
) -> None:
    """Stripe's scheme: `t=<unix>,v1=<hex HMAC-SHA256 of "t.payload">[,v1=...]`. Any v1
    matching any of our secrets passes (rotation); `t` must be within 300 s of now, in
    either direction."""
    if not secrets:
        raise SignatureError("STRIPE_WEBHOOK_SECRET: not set; webhooks cannot be verified")
    if not header:
        raise SignatureError("Stripe-Signature: header missing")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.lstrip("-").isdigit():
            timestamp = int(value)
        elif key == "v1":
            signatures.append(value)
    if timestamp is None or not signatures:
        raise SignatureError("Stripe-Signature: no timestamp or no v1 signature")
    if abs(now.timestamp() - timestamp) > TOLERANCE_SECONDS:
        raise SignatureError("Stripe-Signature: timestamp outside the 300 s tolerance")
    signed = str(timestamp).encode() + b"." + payload
    for secret in secrets:
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        if any(hmac.compare_digest(expected, given) for given in signatures):
            return
    raise SignatureError("Stripe-Signature: no signature matches")


def parse_event(payload: bytes) -> dict[str, Any]:
    try:
        event = json.loads(payload)
    except ValueError:
        raise SignatureError("body: not JSON") from None
    if not isinstance(event, dict) or not str(event.get("id", "")).startswith("evt_"):
        raise SignatureError("body: not a Stripe event (no evt_ id)")
    if not isinstance(event.get("type"), str):
        raise SignatureError("body.type: missing")
    return event


def store_event(conn: Connection, event: dict[str, Any]) -> bool:
    """Put a verified event in the inbox; False for a duplicate delivery."""
    inserted = conn.execute(
        insert(stripe_webhook_events)
        .values(
            stripe_event_id=event["id"],
            event_type=event["type"],
            payload=event,
            signature_verified=True,
        )
        .on_conflict_do_nothing()
        .returning(stripe_webhook_events.c.stripe_event_id)
    ).scalar_one_or_none()
    return inserted is not None


@dataclass
class InboxResult:
    processed: int = 0
    ignored: int = 0
    failed: int = 0
    deferred: int = 0


def process_inbox(
    engine: Engine,
    gateway: PaymentGateway,
    *,
    now: datetime,
    retry_days: Sequence[int],
    limit: int = 500,
) -> InboxResult:
    """Handle received events oldest first. Stripe unreachable: the event stays received
    and is tried at the next tick; any other error marks it failed with the reason."""
    result = InboxResult()
    with engine.connect() as conn:
        events = conn.execute(
            sa.select(
                stripe_webhook_events.c.stripe_event_id,
                stripe_webhook_events.c.event_type,
                stripe_webhook_events.c.payload,
            )
            .where(stripe_webhook_events.c.status == "received")
            .order_by(stripe_webhook_events.c.received_at, stripe_webhook_events.c.stripe_event_id)
            .limit(limit)
        ).all()
    for event_id, event_type, payload in events:
        status, error = "ignored", None
        if event_type in PAYMENT_INTENT_EVENTS:
            intent_id = ((payload.get("data") or {}).get("object") or {}).get("id")
            try:
                resolve_intent(engine, gateway, str(intent_id), now=now, retry_days=retry_days)
                status = "processed"
            except GatewayUnknownError:
                result.deferred += 1
                continue
            except Exception as exc:  # one bad event must not stop the inbox
                status, error = "failed", f"{type(exc).__name__}: {exc}"[:500]
        with engine.begin() as conn:
            conn.execute(
                sa.update(stripe_webhook_events)
                .where(stripe_webhook_events.c.stripe_event_id == event_id)
                .values(status=status, error=error, processed_at=now)
            )
        setattr(result, status, getattr(result, status) + 1)
    return result
