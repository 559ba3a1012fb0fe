"""Stripe through the official SDK: the only module that imports `stripe`.

`StripeApi` implements `payments.gateway.PaymentGateway`. The SDK retries connection
errors, 409 and 5xx itself with the same idempotency key (`max_network_retries`); a 429
it retries only when Stripe says so and without honouring `Retry-After`, so this module
backs off on 429 itself, for `Retry-After` seconds, with the same key. Every request
has an explicit timeout (the SDK's default is 80 s) and, optionally, a client-side rate
limit (Stripe's test mode allows 25 requests/s). The limit gates every HTTP request, the
SDK's own retries included: Stripe counts those too, so a limiter that only saw our
calls would send more than the limit whenever calls fail and are retried.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

import dagster as dg
import stripe

from dagster_billing.observability.tracing import stripe_span
from dagster_billing.payments.gateway import (
    CardDetails,
    GatewayDeclinedError,
    GatewayRejectedError,
    GatewayUnknownError,
    Intent,
    RefundResult,
)
from dagster_billing.settings import Settings

T = TypeVar("T")

RATE_LIMIT_RETRIES = 4
MAX_RETRY_AFTER_SECONDS = 30.0
LIST_PAGE_SIZE = 100


class RateLimiter:
    """At most `per_second` request starts per second, shared by the threads of a process."""

    def __init__(self, per_second: float | None) -> None:
        self.interval = 1.0 / per_second if per_second else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = time.monotonic()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            time.sleep(start - now)


class _LimitedHttpClient(stripe.RequestsClient):
    """The SDK's HTTP client, every request (a retry too) waiting its turn and counted."""

    def __init__(self, limiter: RateLimiter, *, timeout: float) -> None:
        super().__init__(timeout=timeout)
        self.limiter = limiter
        self.sent = 0

    def request(self, *args: Any, **kwargs: Any) -> Any:
        self.limiter.wait()
        self.sent += 1
        return super().request(*args, **kwargs)


def _plain(obj: Any) -> dict[str, Any]:
    return obj.to_dict() if hasattr(obj, "to_dict") else dict(obj or {})


def _intent(obj: Any) -> Intent:
    data = _plain(obj)
    error = data.get("last_payment_error") or {}
    created = data.get("created")
    customer = data.get("customer")
    return Intent(
        id=data["id"],
        status=data["status"],
        amount=int(data["amount"]),
        currency=str(data["currency"]).upper(),
        customer=customer if isinstance(customer, str) or customer is None else customer["id"],
        metadata={str(k): str(v) for k, v in (data.get("metadata") or {}).items()},
        failure_code=error.get("code"),
        decline_code=error.get("decline_code"),
        failure_message=error.get("message"),
        created=datetime.fromtimestamp(created, UTC) if created else None,
    )


def _card(obj: Any) -> CardDetails:
    data = _plain(obj)
    card = data.get("card") or {}
    customer = data.get("customer")
    return CardDetails(
        id=data["id"],
        customer=customer if isinstance(customer, str) or customer is None else customer["id"],
        kind=data.get("type") or "card",
        brand=card.get("brand"),
        last4=card.get("last4"),
        exp_month=card.get("exp_month"),
        exp_year=card.get("exp_year"),
    )


def _retry_after(error: stripe.RateLimitError) -> float:
    headers = error.headers or {}
    value = headers.get("Retry-After") or headers.get("retry-after")
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_SECONDS)
    except (TypeError, ValueError):
        return 1.0


class StripeApi:
    """`PaymentGateway` over `stripe.StripeClient`."""

    def __init__(
        self,
        api_key: str,
        *,
        api_base: str | None = None,
        timeout_seconds: float = 10.0,
        max_network_retries: int = 2,
        requests_per_second: float | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if max_network_retries < 2:
            raise ValueError(f"max_network_retries: must be >= 2, got {max_network_retries}")
        self.http = _LimitedHttpClient(RateLimiter(requests_per_second), timeout=timeout_seconds)
        self.client = stripe.StripeClient(
            api_key,
            base_addresses={"api": api_base} if api_base else None,
            max_network_retries=max_network_retries,
            http_client=self.http,
        )
        self.sleep = sleep

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent to Stripe so far, retries included (what a rate limit counts)."""
        return self.http.sent

    def _call(self, operation: str, request: Callable[[], T]) -> T:
        """One logical request: 429 backed off with the same idempotency key (the caller's
        closure carries it), errors mapped to what the caller may conclude; traced as one
        client span (`stripe <operation>`). The HTTP client applies the rate limit."""
        with stripe_span(operation):
            return self._attempts(request)

    def _attempts(self, request: Callable[[], T]) -> T:
        for attempt in range(RATE_LIMIT_RETRIES + 1):
            try:
                return request()
            except stripe.RateLimitError as exc:
                if attempt == RATE_LIMIT_RETRIES:
                    raise GatewayUnknownError(f"Stripe rate limit: {exc.user_message}") from None
                self.sleep(_retry_after(exc))
            except stripe.CardError as exc:
                error = exc.error
                intent = getattr(error, "payment_intent", None) if error else None
                raise GatewayDeclinedError(
                    exc.code,
                    getattr(error, "decline_code", None) if error else None,
                    exc.user_message or str(exc),
                    _intent(intent) if intent else None,
                ) from None
            except (stripe.APIConnectionError, stripe.APIError) as exc:
                raise GatewayUnknownError(f"Stripe did not answer: {exc.user_message}") from None
            except stripe.StripeError as exc:
                status = exc.http_status
                if status is not None and (status >= 500 or status == 409):
                    raise GatewayUnknownError(
                        f"Stripe answered {status}: {exc.user_message}"
                    ) from None
                raise GatewayRejectedError(
                    f"Stripe refused ({status}, {exc.code}): {exc.user_message}"
                ) from None
        raise AssertionError("unreachable")

    def create_customer(
        self, *, name: str, email: str | None, metadata: Mapping[str, str], idempotency_key: str
    ) -> str:
        params: dict[str, Any] = {"name": name, "metadata": dict(metadata)}
        if email:
            params["email"] = email
        customer = self._call(
            "customers.create",
            lambda: self.client.v1.customers.create(params, {"idempotency_key": idempotency_key}),
        )
        return customer.id

    def payment_method(self, payment_method_id: str) -> CardDetails:
        return _card(
            self._call(
                "payment_methods.retrieve",
                lambda: self.client.v1.payment_methods.retrieve(payment_method_id),
            )
        )

    def attach_payment_method(self, payment_method_id: str, customer: str) -> CardDetails:
        return _card(
            self._call(
                "payment_methods.attach",
                lambda: self.client.v1.payment_methods.attach(
                    payment_method_id, {"customer": customer}
                ),
            )
        )

    def setup_intent_payment_method(self, setup_intent_id: str) -> str:
        data = _plain(
            self._call(
                "setup_intents.retrieve",
                lambda: self.client.v1.setup_intents.retrieve(setup_intent_id),
            )
        )
        method = data.get("payment_method")
        if data.get("status") != "succeeded" or not method:
            raise GatewayRejectedError(
                f"setup intent {setup_intent_id} is {data.get('status')}, not succeeded"
            )
        return method if isinstance(method, str) else method["id"]

    def set_default_payment_method(self, customer: str, payment_method_id: str) -> None:
        self._call(
            "customers.update",
            lambda: self.client.v1.customers.update(
                customer, {"invoice_settings": {"default_payment_method": payment_method_id}}
            ),
        )

    def create_payment_intent(
        self,
        *,
        amount: int,
        currency: str,
        customer: str,
        payment_method: str,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> Intent:
        params: dict[str, Any] = {
            "amount": amount,
            "currency": currency.lower(),
            "customer": customer,
            "payment_method": payment_method,
            "metadata": dict(metadata),
            "confirm": True,
            "off_session": True,
        }
        return _intent(
            self._call(
                "payment_intents.create",
                lambda: self.client.v1.payment_intents.create(
                    params, {"idempotency_key": idempotency_key}
                ),
            )
        )

    def retrieve_payment_intent(self, intent_id: str) -> Intent:
        return _intent(
            self._call(
                "payment_intents.retrieve",
                lambda: self.client.v1.payment_intents.retrieve(intent_id),
            )
        )

    def cancel_payment_intent(self, intent_id: str) -> Intent:
        """Cancel an intent still waiting (for authentication); canceling one already
        canceled is refused by Stripe, so the caller retrieves it again on an error."""
        return _intent(
            self._call(
                "payment_intents.cancel",
                lambda: self.client.v1.payment_intents.cancel(intent_id),
            )
        )

    def find_payment_intents(
        self, *, metadata_key: str, metadata_value: str, customer: str | None, since: datetime
    ) -> list[Intent]:
        """List PaymentIntents created since `since` (by customer where the server filters;
        a server that filters nothing, like localstripe, is read whole) and match metadata."""
        filtered: dict[str, Any] = {"limit": LIST_PAGE_SIZE}
        filtered["created"] = {"gte": int(since.timestamp()) - 60}
        if customer:
            filtered["customer"] = customer
        try:
            pages = self._list(filtered)
        except GatewayRejectedError:
            pages = self._list({"limit": LIST_PAGE_SIZE})
        return [intent for intent in pages if intent.metadata.get(metadata_key) == metadata_value]

    def _list(self, params: dict[str, Any]) -> list[Intent]:
        found: list[Intent] = []
        cursor: str | None = None
        while True:
            page_params = {**params, **({"starting_after": cursor} if cursor else {})}
            page = self._call(
                "payment_intents.list", lambda p=page_params: self.client.v1.payment_intents.list(p)
            )
            batch = [_intent(item) for item in page.data]
            found.extend(batch)
            if not page.has_more or not batch:
                return found
            cursor = batch[-1].id

    def create_refund(
        self,
        *,
        payment_intent: str,
        amount: int,
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> RefundResult:
        params = {"payment_intent": payment_intent, "amount": amount, "metadata": dict(metadata)}
        refund = _plain(
            self._call(
                "refunds.create",
                lambda: self.client.v1.refunds.create(params, {"idempotency_key": idempotency_key}),
            )
        )
        return RefundResult(refund["id"], refund.get("status") or "succeeded", refund["amount"])

    def find_refunds(
        self, *, payment_intent: str, metadata_key: str, metadata_value: str
    ) -> list[RefundResult]:
        page = self._call(
            "refunds.list",
            lambda: self.client.v1.refunds.list({"payment_intent": payment_intent, "limit": 100}),
        )
        return [
            RefundResult(r["id"], r.get("status") or "succeeded", r["amount"])
            for r in (_plain(item) for item in page.data)
            if (r.get("metadata") or {}).get(metadata_key) == metadata_value
        ]


class StripeResource(dg.ConfigurableResource):
    """Stripe for assets and sensors, built from settings; the key is passed by name
    (`dg.EnvVar`) so it never shows in the UI."""

    api_key: str | None = None
    api_base: str | None = None
    enabled: bool = False
    auto_payment: bool = True
    retry_schedule: str = "1,3,5,7"
    charge_workers: int = 8
    timeout_seconds: float = 10.0
    max_network_retries: int = 2
    requests_per_second: float | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> StripeResource:
        return cls(
            api_key=dg.EnvVar("STRIPE_API_KEY") if settings.stripe_api_key else None,
            api_base=str(settings.stripe_api_base).rstrip("/")
            if settings.stripe_api_base
            else None,
            enabled=settings.stripe_enabled,
            auto_payment=settings.feature_auto_payment,
            retry_schedule=settings.payment_retry_schedule,
            charge_workers=settings.payment_charge_workers,
        )

    @property
    def charging(self) -> bool:
        """Charge automatically only with both switches on: STRIPE_ENABLED, FEATURE_AUTO_PAYMENT."""
        return self.enabled and self.auto_payment and bool(self.api_key)

    @property
    def retry_days(self) -> tuple[int, ...]:
        return tuple(int(p) for p in self.retry_schedule.split(",") if p.strip())

    def gateway(self) -> StripeApi:
        if not self.api_key:
            raise GatewayRejectedError("STRIPE_API_KEY: not set; Stripe cannot be called")
        return StripeApi(
            self.api_key,
            api_base=self.api_base,
            timeout_seconds=self.timeout_seconds,
            max_network_retries=self.max_network_retries,
            requests_per_second=self.requests_per_second,
        )


def gateway_from_settings(settings: Settings, **options: Any) -> StripeApi:
    """A gateway for the CLI, the API and the demo."""
    if settings.stripe_api_key is None:
        raise GatewayRejectedError("STRIPE_API_KEY: not set; Stripe cannot be called")
    return StripeApi(
        settings.stripe_api_key.get_secret_value(),
        api_base=str(settings.stripe_api_base).rstrip("/") if settings.stripe_api_base else None,
        **options,
    )
