"""Notifications with real services: aiosmtpd receives every template, a loopback
notification service fails twice then accepts, an SMTP server that is down."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.invoicing.document import Seller
from dagster_billing.notifications.channels import (
    MailDirChannel,
    NotificationServiceChannel,
    SmtpChannel,
)
from dagster_billing.notifications.dispatch import Notifier, retry_failed
from dagster_billing.notifications.specs import TEMPLATES
from dagster_billing.warehouse.database import Warehouse
from tests.conftest import SmtpServer, free_port
from tests.events.helpers import every_type, write_invoice_and_threshold
from tests.invoicing.conftest import Billing
from tests.notifications.conftest import ScriptedServer

SELLER = Seller("DictaMesh Inc.", "100 Mesh Street; San Francisco", "", "Pay by bank transfer.")
SENDER = "DictaMesh Billing <billing@dictamesh.example>"


def _smtp(server: SmtpServer) -> SmtpChannel:
    return SmtpChannel(server.host, server.port, SENDER, tls="none")


def _deliveries(engine: Engine, org_email: str) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "select * from dictamesh_billing_notification_deliveries"
                " where recipient = :r order by id"
            ),
            {"r": org_email},
        ).all()


def _attempts(engine: Engine, delivery_id: int) -> list[sa.Row]:
    with engine.connect() as conn:
        return conn.execute(
            sa.text(
                "select * from dictamesh_billing_notification_attempts"
                " where delivery_id = :d order by attempt"
            ),
            {"d": delivery_id},
        ).all()


def _settle(engine: Engine) -> None:
    """Earlier tests' events are notified (to nowhere) before a test writes its own."""
    Notifier(engine, {}, SELLER).plan()


def test_every_template_arrives_by_smtp_with_text_html_and_the_invoice_pdf(
    billing: Billing, engine: Engine, smtp_server: SmtpServer
) -> None:
    _settle(engine)
    first, second = every_type(billing, engine)
    notifier = Notifier(engine, {"email": _smtp(smtp_server)}, SELLER)
    result = notifier.run()
    assert (result.failed, result.sent) == (0, result.planned)

    for org in (first, second):
        address = f"billing@{org}.example"
        mails = [m.message for m in smtp_server.messages if m.recipients == [address]]
        assert sorted(m["X-DictaMesh-Template"] for m in mails) == sorted(TEMPLATES)
        for mail in mails:
            assert mail["From"] == SENDER
            text = mail.get_body(preferencelist=("plain",))
            html = mail.get_body(preferencelist=("html",))
            assert text is not None and html is not None
            assert org in text.get_content() and "<html" in html.get_content()
            attachments = list(mail.iter_attachments())
            if mail["X-DictaMesh-Template"] == "billing_invoice_generated":
                (pdf,) = attachments
                assert pdf.get_content_type() == "application/pdf"
                assert pdf.get_content().startswith(b"%PDF")
                assert pdf.get_filename().endswith(".pdf")
            else:
                assert attachments == []
        assert {d.status for d in _deliveries(engine, address)} == {"sent"}

    usd = next(
        m.message
        for m in smtp_server.messages
        if m.recipients == [f"billing@{first}.example"]
        and m.message["X-DictaMesh-Template"] == "billing_invoice_generated"
    )
    # 49.00 + 10% tax = 53.90; 10.00 of credit leaves 43.90 due, formatted by Babel.
    body = usd.get_body(preferencelist=("plain",)).get_content()
    assert "Total: $53.90" in body and "$43.90" in body
    eur = next(
        m.message
        for m in smtp_server.messages
        if m.recipients == [f"billing@{second}.example"]
        and m.message["X-DictaMesh-Template"] == "billing_payment_failed"
    )
    assert "€43.90" in eur.get_body(preferencelist=("plain",)).get_content()

    # The relay delivering the same events again, or a second run: no second email.
    count = len(smtp_server.messages)
    with engine.begin() as conn:
        conn.execute(sa.text("update dictamesh_billing_outbox set notified_at = null"))
    again = notifier.run()
    assert (again.planned, again.sent, len(smtp_server.messages)) == (0, 0, count)


def test_opted_out_recipients_get_no_usage_alerts_but_still_get_invoices(
    billing: Billing, engine: Engine, smtp_server: SmtpServer
) -> None:
    customer = billing.customer()
    _settle(engine)  # the story starts after the customer's subscription.created
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "insert into dictamesh_billing_notification_recipients"
                " (organization_id, channel, address, opted_out) values"
                " (:o, 'email', 'cfo@x.example', '{}'),"
                " (:o, 'email', 'ops@x.example',"
                "  '{billing_usage_threshold_reached,billing_invoice_generated}')"
            ),
            {"o": customer.organization_id},
        )
    write_invoice_and_threshold(billing, engine, customer)
    Notifier(engine, {"email": _smtp(smtp_server)}, SELLER, attach_pdf=False).run()
    templates = {
        address: sorted(d.template for d in _deliveries(engine, address))
        for address in (
            "cfo@x.example",
            "ops@x.example",
            f"billing@{customer.organization_external_id}.example",
        )
    }
    assert templates == {
        "cfo@x.example": ["billing_invoice_generated", "billing_usage_threshold_reached"],
        "ops@x.example": ["billing_invoice_generated"],  # invoices cannot be opted out of
        f"billing@{customer.organization_external_id}.example": [],  # explicit list replaces it
    }


def test_notification_service_failing_twice_then_accepting_is_delivered_once(
    billing: Billing, engine: Engine, http_server: ScriptedServer
) -> None:
    customer = billing.customer()
    _settle(engine)  # the story starts after the customer's subscription.created
    write_invoice_and_threshold(billing, engine, customer)
    http_server.answer(500, 500, 200)
    notifier = Notifier(
        engine,
        {"service": NotificationServiceChannel(http_server.url)},
        SELLER,
        retry_attempts=3,
        backoff_seconds=0.05,
    )
    notifier.plan()
    sent, failed = notifier.send_pending(limit=1)
    assert (sent, failed) == (1, 0)
    (delivery,) = [
        d for d in _deliveries(engine, customer.organization_external_id) if d.status == "sent"
    ]
    assert delivery.attempts == 3
    assert [a.ok for a in _attempts(engine, delivery.id)] == [False, False, True]
    assert "HTTP 500" in _attempts(engine, delivery.id)[0].detail
    assert len(http_server.requests) == 3
    keys = {r.headers["Idempotency-Key"] for r in http_server.requests}
    assert keys == {f"{delivery.event_id}:service:{customer.organization_external_id}"}
    assert all(r.path == "/api/v1/notifications" for r in http_server.requests)


def test_smtp_down_is_retried_then_failed_with_the_reason_and_sent_later(
    billing: Billing, engine: Engine, smtp_server: SmtpServer
) -> None:
    customer = billing.customer()
    _settle(engine)  # the story starts after the customer's subscription.created
    write_invoice_and_threshold(billing, engine, customer)
    address = f"billing@{customer.organization_external_id}.example"
    down = SmtpChannel("127.0.0.1", free_port(), SENDER, tls="none", timeout=2)
    result = Notifier(engine, {"email": down}, SELLER, retry_attempts=3, backoff_seconds=0.05).run()
    assert (result.sent, result.failed) == (0, 2)
    deliveries = _deliveries(engine, address)
    assert [d.status for d in deliveries] == ["failed", "failed"]
    assert all("Connection refused" in d.last_error for d in deliveries)
    assert all(len(_attempts(engine, d.id)) == 3 for d in deliveries)

    with engine.begin() as conn:
        assert retry_failed(conn) == 2
    Notifier(engine, {"email": _smtp(smtp_server)}, SELLER, attach_pdf=False).run()
    assert [d.status for d in _deliveries(engine, address)] == ["sent", "sent"]
    assert len([m for m in smtp_server.messages if m.recipients == [address]]) == 2


def test_without_smtp_emails_are_written_as_eml_files(
    billing: Billing, engine: Engine, tmp_path: Path
) -> None:
    customer = billing.customer()
    _settle(engine)  # the story starts after the customer's subscription.created
    write_invoice_and_threshold(billing, engine, customer)
    Notifier(engine, {"email": MailDirChannel(tmp_path, SENDER)}, SELLER).run()
    files = sorted(tmp_path.glob("*.eml"))
    assert len(files) == 2
    assert any(b"application/pdf" in f.read_bytes() for f in files)


def test_preview_renders_a_template_for_an_organization(
    billing: Billing, warehouse: Warehouse, engine: Engine, tmp_path: Path
) -> None:
    customer = billing.customer()
    write_invoice_and_threshold(billing, engine, customer)
    billing_cli = str(Path(sys.executable).with_name("billing"))
    env = {**os.environ, "BILLING_DATABASE_DSN": warehouse.libpq_url()}
    org = customer.organization_external_id
    shown = subprocess.run(
        [billing_cli, "notifications", "preview", "billing_invoice_generated", "--org", org],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert shown.returncode == 0, shown.stderr
    assert "Subject: Invoice " in shown.stdout and "Amount due by" in shown.stdout
    out = tmp_path / "renewal.html"
    written = subprocess.run(
        [
            billing_cli,
            "notifications",
            "preview",
            "billing_upcoming_renewal",
            "--org",
            org,
            "--html",
            "-o",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert written.returncode == 0, written.stderr
    assert "renews on" in out.read_text()
    bad = subprocess.run(
        [billing_cli, "notifications", "preview", "billing_nope", "--org", org],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().startswith("error: template: ")
    assert "Traceback" not in bad.stderr
