"""Delivery channels: email (SMTP, or files when no server is configured) and the
DictaMesh notification service (a JSON POST). A channel sends one message to one
recipient or raises `DeliveryError`, saying whether trying again could help."""

from __future__ import annotations

import email.policy
import re
import smtplib
import ssl
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import formatdate, make_msgid
from pathlib import Path
from typing import Protocol

import httpx

from dagster_billing.notifications.render import Rendered


class DeliveryError(Exception):
    def __init__(self, reason: str, *, retryable: bool = True) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retryable = retryable


class Channel(Protocol):
    name: str

    def send(self, message: Rendered, recipient: str, delivery_key: str) -> str: ...


def email_message(
    message: Rendered, sender: str, recipient: str, delivery_key: str
) -> EmailMessage:
    """multipart/alternative (text, HTML) with attachments; the Message-ID is derived from
    the delivery key, so a receiving system can recognise a resend as the same message."""
    mail = EmailMessage(policy=email.policy.SMTP)
    mail["Subject"] = message.subject
    mail["From"] = sender
    mail["To"] = recipient
    mail["Date"] = formatdate(localtime=False, usegmt=True)
    mail["Message-ID"] = make_msgid(idstring=re.sub(r"[^A-Za-z0-9.-]", "-", delivery_key))
    mail["Content-Language"] = message.locale
    mail["X-DictaMesh-Template"] = message.template
    mail.set_content(message.text)
    mail.add_alternative(message.html, subtype="html")
    for attachment in message.attachments:
        maintype, subtype = attachment.mimetype.split("/", 1)
        mail.add_attachment(
            attachment.content, maintype=maintype, subtype=subtype, filename=attachment.filename
        )
    return mail


@dataclass
class SmtpChannel:
    host: str
    port: int
    sender: str
    tls: str = "starttls"  # starttls | ssl | none
    username: str | None = None
    password: str | None = None
    timeout: float = 10.0
    name: str = "email"

    def send(self, message: Rendered, recipient: str, delivery_key: str) -> str:
        mail = email_message(message, self.sender, recipient, delivery_key)
        try:
            if self.tls == "ssl":
                context = ssl.create_default_context()
                client: smtplib.SMTP = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=context
                )
            else:
                client = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            with client:
                if self.tls == "starttls":
                    client.starttls(context=ssl.create_default_context())
                if self.username:
                    client.login(self.username, self.password or "")
                refused = client.send_message(mail)
        except smtplib.SMTPRecipientsRefused as exc:
            raise DeliveryError(
                f"smtp: recipient refused: {exc.recipients}", retryable=False
            ) from None
        except smtplib.SMTPResponseException as exc:
            permanent = 500 <= exc.smtp_code < 600
            raise DeliveryError(
                f"smtp {exc.smtp_code}: {exc.smtp_error.decode(errors='replace')}",
                retryable=not permanent,
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise DeliveryError(f"smtp {self.host}:{self.port}: {exc}") from None
        if refused:
            raise DeliveryError(f"smtp: refused {sorted(refused)}", retryable=False)
        return mail["Message-ID"]


@dataclass
class MailDirChannel:
    """No SMTP server configured: each email is written as an .eml file a newcomer can
    open (the demo's `.billing/outbox-mail/`)."""

    directory: Path
    sender: str
    name: str = "email"

    def send(self, message: Rendered, recipient: str, delivery_key: str) -> str:
        mail = email_message(message, self.sender, recipient, delivery_key)
        self.directory.mkdir(parents=True, exist_ok=True)
        safe = re.sub(r"[^A-Za-z0-9@._-]", "_", f"{delivery_key}")
        path = self.directory / f"{safe}.eml"
        path.write_bytes(mail.as_bytes())
        return str(path)


@dataclass
class NotificationServiceChannel:
    """POST {url}/api/v1/notifications with the JSON documented in docs/events.md; 2xx is
    delivered, 408/429/5xx and network errors are retried, other 4xx are final."""

    url: str
    timeout: float = 10.0
    name: str = "service"

    def send(self, message: Rendered, recipient: str, delivery_key: str) -> str:
        body = {
            "id": delivery_key,
            "template": message.template,
            "recipient": recipient,
            "locale": message.locale,
            "subject": message.subject,
            "text": message.text,
            "html": message.html,
        }
        endpoint = self.url.rstrip("/") + "/api/v1/notifications"
        try:
            response = httpx.post(
                endpoint,
                json=body,
                headers={"Idempotency-Key": delivery_key},
                timeout=self.timeout,
            )
        except httpx.HTTPError as exc:
            raise DeliveryError(f"notification service: {type(exc).__name__}: {exc}") from None
        if response.is_success:
            return f"HTTP {response.status_code}"
        retryable = response.status_code in (408, 429) or response.status_code >= 500
        raise DeliveryError(
            f"notification service: HTTP {response.status_code} {response.text[:200]}",
            retryable=retryable,
        )
