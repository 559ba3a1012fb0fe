"""SQLAlchemy Core view of the warehouse tables, for typed queries from Python.

The DDL (constraints, partitions, triggers) lives once, in the SQL migrations;
this module lists tables and column types only. `tests/warehouse/test_migrations.py`
fails if the two drift apart.
"""

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Date,
    Integer,
    LargeBinary,
    MetaData,
    Numeric,
    SmallInteger,
    Table,
    Text,
)
from sqlalchemy.dialects.postgresql import ARRAY, CHAR, JSONB, TIMESTAMP, UUID

metadata = MetaData()

MONEY = Numeric(20, 6)
QUANTITY = Numeric(24, 6)
TIMESTAMPTZ = TIMESTAMP(timezone=True)


def _table(name: str, *columns: Column) -> Table:
    return Table(f"dictamesh_billing_{name}", metadata, *columns)


currencies = _table(
    "currencies",
    Column("code", CHAR(3), primary_key=True),
    Column("minor_units", SmallInteger),
    Column("catalog_factor", MONEY),
    Column("catalog_version", Text),
    Column("updated_at", TIMESTAMPTZ),
)

metrics = _table(
    "metrics",
    Column("id", Text, primary_key=True),
    Column("display_name", Text),
    Column("unit", Text),
    Column("unit_size", MONEY),
    Column("aggregation", Text),
    Column("catalog_version", Text),
    Column("updated_at", TIMESTAMPTZ),
)

subscription_plans = _table(
    "subscription_plans",
    Column("id", Text, primary_key=True),
    Column("name", Text),
    Column("description", Text),
    Column("included_seats", Integer),
    Column("seats_sellable", Boolean),
    Column("max_adapters", Integer),
    Column("bills_overage", Boolean),
    Column("sort_order", Integer),
    Column("active", Boolean),
    Column("catalog_version", Text),
    Column("created_at", TIMESTAMPTZ),
    Column("updated_at", TIMESTAMPTZ),
)

plan_quotas = _table(
    "plan_quotas",
    Column("plan_id", Text, primary_key=True),
    Column("metric", Text, primary_key=True),
    Column("included_quantity", QUANTITY),
    Column("catalog_version", Text),
)

price_books = _table(
    "price_books",
    Column("plan_id", Text, primary_key=True),
    Column("currency", CHAR(3), primary_key=True),
    Column("monthly_fee", MONEY),
    Column("annual_fee", MONEY),
    Column("seat_price_monthly", MONEY),
    Column("source", Text),
    Column("catalog_version", Text),
    Column("updated_at", TIMESTAMPTZ),
)

pricing_tiers = _table(
    "pricing_tiers",
    Column("metric", Text, primary_key=True),
    Column("currency", CHAR(3), primary_key=True),
    Column("tier", SmallInteger, primary_key=True),
    Column("lower_bound", QUANTITY),
    Column("upper_bound", QUANTITY),
    Column("unit_price", MONEY),
    Column("source", Text),
    Column("catalog_version", Text),
    Column("updated_at", TIMESTAMPTZ),
)

fx_rates = _table(
    "fx_rates",
    Column("currency", CHAR(3), primary_key=True),
    Column("valid_from", Date, primary_key=True),
    Column("usd_per_unit", Numeric(20, 10)),
    Column("source", Text),
)

organizations = _table(
    "organizations",
    Column("id", BigInteger, primary_key=True),
    Column("external_id", Text),
    Column("name", Text),
    Column("email", Text),
    Column("currency", CHAR(3)),
    Column("locale", Text),
    Column("tax_rate", Numeric(9, 6)),
    Column("tax_exempt", Boolean),
    Column("tax_jurisdiction", Text),
    Column("billing_address", JSONB),
    Column("stripe_customer_id", Text),
    Column("status", Text),
    Column("metadata", JSONB),
    Column("created_at", TIMESTAMPTZ),
    Column("updated_at", TIMESTAMPTZ),
)

subscriptions = _table(
    "subscriptions",
    Column("id", BigInteger, primary_key=True),
    Column("external_id", Text),
    Column("organization_id", BigInteger),
    Column("plan_id", Text),
    Column("billing_cycle", Text),
    Column("status", Text),
    Column("seats", Integer),
    Column("pricing_mode", Text),
    Column("price_override", MONEY),
    Column("billing_anchor", TIMESTAMPTZ),
    Column("started_at", TIMESTAMPTZ),
    Column("current_period_start", TIMESTAMPTZ),
    Column("current_period_end", TIMESTAMPTZ),
    Column("cancel_at", TIMESTAMPTZ),
    Column("canceled_at", TIMESTAMPTZ),
    Column("stripe_subscription_id", Text),
    Column("metadata", JSONB),
    Column("created_at", TIMESTAMPTZ),
    Column("updated_at", TIMESTAMPTZ),
)

subscription_changes = _table(
    "subscription_changes",
    Column("id", BigInteger, primary_key=True),
    Column("subscription_id", BigInteger),
    Column("effective_at", TIMESTAMPTZ),
    Column("plan_id", Text),
    Column("seats", Integer),
    Column("reason", Text),
    Column("created_at", TIMESTAMPTZ),
)

promotions = _table(
    "promotions",
    Column("id", BigInteger, primary_key=True),
    Column("organization_id", BigInteger),
    Column("code", Text),
    Column("position", Integer),
    Column("percent_off", Numeric(9, 6)),
    Column("amount_off", MONEY),
    Column("duration_periods", Integer),
    Column("created_at", TIMESTAMPTZ),
)

usage_metrics = _table(
    "usage_metrics",
    Column("organization_id", BigInteger, primary_key=True),
    Column("metric", Text, primary_key=True),
    Column("hour_start", TIMESTAMPTZ, primary_key=True),
    Column("quantity", QUANTITY),
    Column("source", Text),
    Column("idempotency_key", Text),
    Column("ingested_at", TIMESTAMPTZ),
)

usage_daily = _table(
    "usage_daily",
    Column("organization_id", BigInteger, primary_key=True),
    Column("metric", Text, primary_key=True),
    Column("day", Date, primary_key=True),
    Column("quantity", QUANTITY),
    Column("hours", SmallInteger),
    Column("updated_at", TIMESTAMPTZ),
)

usage_day_versions = _table(
    "usage_day_versions",
    Column("day", Date, primary_key=True),
    Column("version", BigInteger),
    Column("rolled_up_version", BigInteger),
    Column("changed_at", TIMESTAMPTZ),
)

usage_rejects = _table(
    "usage_rejects",
    Column("id", BigInteger, primary_key=True),
    Column("hour_start", TIMESTAMPTZ),
    Column("source", Text),
    Column("organization", Text),
    Column("metric", Text),
    Column("series", JSONB),
    Column("sample_at", TIMESTAMPTZ),
    Column("value", Text),
    Column("reason", Text),
    Column("run_id", Text),
    Column("detected_at", TIMESTAMPTZ),
)

usage_ingestions = _table(
    "usage_ingestions",
    Column("id", BigInteger, primary_key=True),
    Column("hour_start", TIMESTAMPTZ),
    Column("run_id", Text),
    Column("series", Integer),
    Column("samples", Integer),
    Column("rows_written", Integer),
    Column("rows_changed", Integer),
    Column("rejects", Integer),
    Column("ingested_at", TIMESTAMPTZ),
)

usage_adjustments = _table(
    "usage_adjustments",
    Column("id", BigInteger, primary_key=True),
    Column("organization_id", BigInteger),
    Column("metric", Text),
    Column("hour_start", TIMESTAMPTZ),
    Column("invoice_id", BigInteger),
    Column("old_quantity", QUANTITY),
    Column("new_quantity", QUANTITY),
    Column("source", Text),
    Column("detected_at", TIMESTAMPTZ),
    Column("consumed_at", TIMESTAMPTZ),
)

usage_imports = _table(
    "usage_imports",
    Column("id", BigInteger, primary_key=True),
    Column("file_name", Text),
    Column("file_sha256", CHAR(64)),
    Column("rows_read", BigInteger),
    Column("rows_invalid", BigInteger),
    Column("rows_duplicate", BigInteger),
    Column("rows_written", BigInteger),
    Column("imported_at", TIMESTAMPTZ),
)

usage_threshold_crossings = _table(
    "usage_threshold_crossings",
    Column("organization_id", BigInteger, primary_key=True),
    Column("metric", Text, primary_key=True),
    Column("period_start", TIMESTAMPTZ, primary_key=True),
    Column("threshold", SmallInteger, primary_key=True),
    Column("period_end", TIMESTAMPTZ),
    Column("plan_id", Text),
    Column("quota", QUANTITY),
    Column("usage", QUANTITY),
    Column("event_id", UUID(as_uuid=True)),
    Column("crossed_at", TIMESTAMPTZ),
)

invoices = _table(
    "invoices",
    Column("id", BigInteger, primary_key=True),
    Column("number", Text),
    Column("organization_id", BigInteger),
    Column("subscription_id", BigInteger),
    Column("period_start", TIMESTAMPTZ),
    Column("period_end", TIMESTAMPTZ),
    Column("currency", CHAR(3)),
    Column("status", Text),
    Column("subtotal", MONEY),
    Column("discount", MONEY),
    Column("tax", MONEY),
    Column("total", MONEY),
    Column("credits_applied", MONEY),
    Column("amount_due", MONEY),
    Column("issued_at", TIMESTAMPTZ),
    Column("due_at", TIMESTAMPTZ),
    Column("paid_at", TIMESTAMPTZ),
    Column("voided_at", TIMESTAMPTZ),
    Column("void_reason", Text),
    Column("stripe_invoice_id", Text),
    Column("pdf_path", Text),
    Column("pdf_sha256", CHAR(64)),
    Column("created_at", TIMESTAMPTZ),
    Column("updated_at", TIMESTAMPTZ),
    Column("invoice_key", Text),
    Column("overdue_at", TIMESTAMPTZ),
    Column("tax_rate", Numeric(9, 6)),
)

invoice_number_counters = _table(
    "invoice_number_counters",
    Column("prefix", Text, primary_key=True),
    Column("year", SmallInteger, primary_key=True),
    Column("last_value", Integer),
    Column("updated_at", TIMESTAMPTZ),
)

invoice_line_items = _table(
    "invoice_line_items",
    Column("id", BigInteger, primary_key=True),
    Column("invoice_id", BigInteger),
    Column("line_number", Integer),
    Column("kind", Text),
    Column("description", Text),
    Column("metric", Text),
    Column("quantity", QUANTITY),
    Column("unit_amount", MONEY),
    Column("amount", MONEY),
    Column("period_start", TIMESTAMPTZ),
    Column("period_end", TIMESTAMPTZ),
    Column("tier_detail", JSONB),
    Column("adjusts_invoice_id", BigInteger),
    Column("created_at", TIMESTAMPTZ),
)

payment_methods = _table(
    "payment_methods",
    Column("id", BigInteger, primary_key=True),
    Column("organization_id", BigInteger),
    Column("stripe_payment_method_id", Text),
    Column("kind", Text),
    Column("brand", Text),
    Column("last4", CHAR(4)),
    Column("exp_month", SmallInteger),
    Column("exp_year", SmallInteger),
    Column("is_default", Boolean),
    Column("created_at", TIMESTAMPTZ),
)

payments = _table(
    "payments",
    Column("id", BigInteger, primary_key=True),
    Column("invoice_id", BigInteger),
    Column("attempt", Integer),
    Column("amount", MONEY),
    Column("currency", CHAR(3)),
    Column("provider", Text),
    Column("status", Text),
    Column("idempotency_key", Text),
    Column("stripe_payment_intent_id", Text),
    Column("payment_method_id", BigInteger),
    Column("failure_code", Text),
    Column("failure_message", Text),
    Column("next_retry_at", TIMESTAMPTZ),
    Column("created_at", TIMESTAMPTZ),
    Column("updated_at", TIMESTAMPTZ),
    Column("decline_code", Text),
    Column("reference", Text),
    Column("amount_refunded", MONEY),
    Column("reconcile_attempts", Integer),
    Column("next_reconcile_at", TIMESTAMPTZ),
    Column("succeeded_at", TIMESTAMPTZ),
)

credit_note_number_counters = _table(
    "credit_note_number_counters",
    Column("prefix", Text, primary_key=True),
    Column("year", SmallInteger, primary_key=True),
    Column("last_value", Integer),
    Column("updated_at", TIMESTAMPTZ),
)

credit_notes = _table(
    "credit_notes",
    Column("id", BigInteger, primary_key=True),
    Column("number", Text),
    Column("invoice_id", BigInteger),
    Column("payment_id", BigInteger),
    Column("amount", MONEY),
    Column("currency", CHAR(3)),
    Column("reason", Text),
    Column("status", Text),
    Column("idempotency_key", Text),
    Column("stripe_refund_id", Text),
    Column("issued_at", TIMESTAMPTZ),
    Column("pdf_path", Text),
    Column("pdf_sha256", CHAR(64)),
    Column("created_at", TIMESTAMPTZ),
    Column("updated_at", TIMESTAMPTZ),
)

payment_ledger = _table(
    "payment_ledger",
    Column("id", BigInteger, primary_key=True),
    Column("organization_id", BigInteger),
    Column("invoice_id", BigInteger),
    Column("payment_id", BigInteger),
    Column("credit_note_id", BigInteger),
    Column("entry_type", Text),
    Column("amount", MONEY),
    Column("currency", CHAR(3)),
    Column("occurred_at", TIMESTAMPTZ),
    Column("created_at", TIMESTAMPTZ),
)

credits = _table(
    "credits",
    Column("id", BigInteger, primary_key=True),
    Column("organization_id", BigInteger),
    Column("entry_type", Text),
    Column("credit_type", Text),
    Column("grant_id", BigInteger),
    Column("invoice_id", BigInteger),
    Column("amount", MONEY),
    Column("currency", CHAR(3)),
    Column("expires_at", TIMESTAMPTZ),
    Column("description", Text),
    Column("idempotency_key", Text),
    Column("created_at", TIMESTAMPTZ),
)

outbox = _table(
    "outbox",
    Column("id", BigInteger, primary_key=True),
    Column("event_id", UUID(as_uuid=True)),
    Column("event_type", Text),
    Column("aggregate_type", Text),
    Column("aggregate_id", Text),
    Column("dedupe_key", Text),
    Column("payload", JSONB),
    Column("headers", JSONB),
    Column("occurred_at", TIMESTAMPTZ),
    Column("attempts", Integer),
    Column("last_error", Text),
    Column("notified_at", TIMESTAMPTZ),
    Column("webhooks_at", TIMESTAMPTZ),
    Column("created_at", TIMESTAMPTZ),
)

# The relay's progress (migration 0012): each outbox id is in exactly one of these.
outbox_unpublished = _table("outbox_unpublished", Column("id", BigInteger, primary_key=True))

outbox_published = _table(
    "outbox_published",
    Column("id", BigInteger, primary_key=True),
    Column("published_at", TIMESTAMPTZ),
)

stripe_webhook_events = _table(
    "stripe_webhook_events",
    Column("stripe_event_id", Text, primary_key=True),
    Column("event_type", Text),
    Column("payload", JSONB),
    Column("signature_verified", Boolean),
    Column("received_at", TIMESTAMPTZ),
    Column("processed_at", TIMESTAMPTZ),
    Column("status", Text),
    Column("error", Text),
)

audit_log = _table(
    "audit_log",
    Column("id", BigInteger, primary_key=True),
    Column("occurred_at", TIMESTAMPTZ),
    Column("actor", Text),
    Column("action", Text),
    Column("entity_type", Text),
    Column("entity_id", Text),
    Column("payload", JSONB),
    Column("prev_hash", CHAR(64)),
    Column("hash", CHAR(64)),
)

api_keys = _table(
    "api_keys",
    Column("id", BigInteger, primary_key=True),
    Column("prefix", Text),
    Column("key_hash", CHAR(64)),
    Column("role", Text),
    Column("organization_id", BigInteger),
    Column("name", Text),
    Column("created_at", TIMESTAMPTZ),
    Column("revoked_at", TIMESTAMPTZ),
    Column("last_used_at", TIMESTAMPTZ),
)

api_idempotency_keys = _table(
    "api_idempotency_keys",
    Column("api_key_id", BigInteger, primary_key=True),
    Column("idempotency_key", Text, primary_key=True),
    Column("request_hash", CHAR(64)),
    Column("status", Text),
    Column("response_status", Integer),
    Column("response_body", LargeBinary),
    Column("response_type", Text),
    Column("created_at", TIMESTAMPTZ),
    Column("completed_at", TIMESTAMPTZ),
)

# --- Notifications and customer webhooks (migration 0008) ------------------------------

notification_recipients = _table(
    "notification_recipients",
    Column("id", BigInteger, primary_key=True),
    Column("organization_id", BigInteger),
    Column("channel", Text),
    Column("address", Text),
    Column("opted_out", ARRAY(Text)),
    Column("created_at", TIMESTAMPTZ),
)

notification_deliveries = _table(
    "notification_deliveries",
    Column("id", BigInteger, primary_key=True),
    Column("event_id", UUID(as_uuid=True)),
    Column("template", Text),
    Column("channel", Text),
    Column("recipient", Text),
    Column("organization_id", BigInteger),
    Column("status", Text),
    Column("attempts", Integer),
    Column("last_error", Text),
    Column("created_at", TIMESTAMPTZ),
    Column("sent_at", TIMESTAMPTZ),
)

notification_attempts = _table(
    "notification_attempts",
    Column("delivery_id", BigInteger, primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("ok", Boolean),
    Column("detail", Text),
    Column("attempted_at", TIMESTAMPTZ),
)

webhook_endpoints = _table(
    "webhook_endpoints",
    Column("id", BigInteger, primary_key=True),
    Column("organization_id", BigInteger),
    Column("url", Text),
    Column("secret", Text),
    Column("event_types", ARRAY(Text)),
    Column("status", Text),
    Column("failing_since", TIMESTAMPTZ),
    Column("disabled_at", TIMESTAMPTZ),
    Column("created_at", TIMESTAMPTZ),
)

webhook_deliveries = _table(
    "webhook_deliveries",
    Column("id", BigInteger, primary_key=True),
    Column("endpoint_id", BigInteger),
    Column("event_id", UUID(as_uuid=True)),
    Column("status", Text),
    Column("attempts", Integer),
    Column("next_attempt_at", TIMESTAMPTZ),
    Column("last_status_code", Integer),
    Column("last_error", Text),
    Column("created_at", TIMESTAMPTZ),
    Column("delivered_at", TIMESTAMPTZ),
)

webhook_attempts = _table(
    "webhook_attempts",
    Column("delivery_id", BigInteger, primary_key=True),
    Column("attempt", Integer, primary_key=True),
    Column("status_code", Integer),
    Column("error", Text),
    Column("attempted_at", TIMESTAMPTZ),
)
rerate_adjustments = _table(
    "rerate_adjustments",
    Column("id", BigInteger, primary_key=True),
    Column("organization_id", BigInteger),
    Column("subscription_id", BigInteger),
    Column("corrected_invoice_id", BigInteger),
    Column("kind", Text),
    Column("metric", Text),
    Column("line_description", Text),
    Column("period_start", TIMESTAMPTZ),
    Column("period_end", TIMESTAMPTZ),
    Column("description", Text),
    Column("amount", MONEY),
    Column("currency", CHAR(3)),
    Column("catalog_version", Text),
    Column("window_start", TIMESTAMPTZ),
    Column("window_end", TIMESTAMPTZ),
    Column("created_by", Text),
    Column("created_at", TIMESTAMPTZ),
)
