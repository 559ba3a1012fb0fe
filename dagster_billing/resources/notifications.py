"""Notification settings as a resource: the notification service, retries, renewals."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from sqlalchemy.engine import Engine

from dagster_billing.notifications.channels import Channel, NotificationServiceChannel
from dagster_billing.notifications.dispatch import Notifier
from dagster_billing.resources.invoicing import InvoicingResource
from dagster_billing.resources.smtp import SmtpResource
from dagster_billing.settings import Settings


class NotificationsResource(dg.ConfigurableResource):
    service_url: str = "http://localhost:8080"
    service_enabled: bool = False
    retry_attempts: int = 3
    backoff_seconds: float = 1.0
    renewal_days: int = 30
    webhook_disable_after_days: int = 3

    def notifier(
        self, engine: Engine, smtp: SmtpResource, invoicing: InvoicingResource
    ) -> Notifier:
        channels: dict[str, Channel] = {"email": smtp.channel()}
        if self.service_enabled:
            channels["service"] = NotificationServiceChannel(self.service_url)
        return Notifier(
            engine,
            channels,
            invoicing.seller,
            retry_attempts=self.retry_attempts,
            backoff_seconds=self.backoff_seconds,
            invoice_template_dir=Path(invoicing.templates),
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> NotificationsResource:
        return cls(
            service_url=str(settings.notification_service_url),
            service_enabled=settings.notification_service_enabled,
            retry_attempts=settings.notification_retry_attempts,
            renewal_days=settings.notification_renewal_days,
            webhook_disable_after_days=settings.webhook_disable_after_days,
        )
