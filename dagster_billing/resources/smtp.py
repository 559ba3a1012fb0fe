"""Email as a Dagster resource: an SMTP server, or a directory of .eml files when none is
configured (so the demo's emails can be opened without a mail server)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg

from dagster_billing.notifications.channels import MailDirChannel, SmtpChannel
from dagster_billing.settings import Settings


class SmtpResource(dg.ConfigurableResource):
    host: str | None = None
    port: int = 587
    tls: str = "starttls"  # starttls | ssl | none
    username: str | None = None
    password: str | None = None
    sender: str = "DictaMesh Billing <billing@dictamesh.example>"
    mail_dir: str = ".billing/outbox-mail"

    def channel(self) -> SmtpChannel | MailDirChannel:
        if not self.host:
            return MailDirChannel(Path(self.mail_dir), self.sender)
        return SmtpChannel(
            self.host, self.port, self.sender, self.tls, self.username, self.password
        )

    @classmethod
    def from_settings(cls, settings: Settings) -> SmtpResource:
        """The password is passed by variable name, so it never shows in the Dagster UI."""
        return cls(
            host=settings.smtp_host,
            port=settings.smtp_port,
            tls=settings.smtp_tls,
            username=settings.smtp_username,
            password=dg.EnvVar("SMTP_PASSWORD") if settings.smtp_password else None,
            sender=settings.notification_email_from,
            mail_dir=str(settings.billing_data_dir / "outbox-mail"),
        )
