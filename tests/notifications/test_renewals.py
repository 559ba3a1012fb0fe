"""The daily renewal reminder: annual subscriptions N days before renewal, once each."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import dagster as dg
import sqlalchemy as sa
from sqlalchemy.engine import Engine

from dagster_billing.assets.events import billing_notifications_sent, billing_renewal_reminders
from dagster_billing.resources import InvoicingResource, WarehouseResource
from dagster_billing.resources.notifications import NotificationsResource
from dagster_billing.resources.smtp import SmtpResource
from dagster_billing.warehouse.calendar import billing_period
from dagster_billing.warehouse.database import Warehouse
from tests.conftest import SmtpServer
from tests.invoicing.conftest import Billing


def test_a_renewal_is_the_first_anniversary_after_now(engine: Engine) -> None:
    """The end of the term year holding now; a Feb 29 anchor renews Feb 28, then Feb 29."""
    anchor = datetime(2024, 2, 29, 12, tzinfo=UTC)
    with engine.connect() as conn:
        assert billing_period(
            conn, anchor, "annual", datetime(2024, 3, 1, tzinfo=UTC)
        ).fee_end == datetime(2025, 2, 28, 12, tzinfo=UTC)
        assert billing_period(
            conn, anchor, "annual", datetime(2027, 3, 1, tzinfo=UTC)
        ).fee_end == datetime(2028, 2, 29, 12, tzinfo=UTC)


def test_annual_renewals_in_the_window_are_reminded_once_by_email(
    billing: Billing, warehouse: Warehouse, engine: Engine, smtp_server: SmtpServer, tmp_path: Path
) -> None:
    soon, later = billing.customer(), billing.customer()
    with engine.begin() as conn:
        for customer, anchor in (
            (soon, datetime(2025, 12, 20, tzinfo=UTC)),
            (later, datetime(2025, 3, 1, tzinfo=UTC)),
        ):
            conn.execute(
                sa.text(
                    "update dictamesh_billing_subscriptions set billing_cycle = 'annual',"
                    " billing_anchor = :a, started_at = :a where id = :s"
                ),
                {"a": anchor, "s": customer.subscription_id},
            )
    resources = {
        "warehouse": WarehouseResource(dsn=warehouse.libpq_url(), data_dir="/nonexistent"),
        "notifications": NotificationsResource(renewal_days=30),
        "smtp": SmtpResource(host=smtp_server.host, port=smtp_server.port, tls="none"),
        "invoicing": InvoicingResource(
            data_dir=str(tmp_path),
            seller_name="DictaMesh Inc.",
            seller_address="1 Mesh St",
            payment_instructions="Pay by transfer.",
        ),
    }
    config = {
        "ops": {"billing_renewal_reminders": {"config": {"as_of": "2026-11-25T08:00:00+00:00"}}}
    }
    for _ in range(2):
        result = dg.materialize(
            [billing_renewal_reminders, billing_notifications_sent],
            resources=resources,
            run_config=config,
        )
        assert result.success
    with engine.connect() as conn:
        reminded = (
            conn.execute(
                sa.text(
                    "select payload from dictamesh_billing_outbox"
                    " where event_type = 'billing.subscription.renewal_upcoming'"
                )
            )
            .scalars()
            .all()
        )
    assert [(p["subscription_id"], p["renews_at"]) for p in reminded] == [
        (soon.subscription_external_id, "2026-12-20T00:00:00+00:00")
    ]
    mails = [
        m.message
        for m in smtp_server.messages
        if m.recipients == [f"billing@{soon.organization_external_id}.example"]
        and m.message["X-DictaMesh-Template"] == "billing_upcoming_renewal"
    ]
    assert [m["Subject"] for m in mails] == ["Your DictaMesh Starter plan renews on Dec 20, 2026"]
