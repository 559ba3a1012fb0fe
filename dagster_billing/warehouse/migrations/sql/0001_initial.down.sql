-- Reverse of 0001_initial.up.sql. The btree_gist extension is left installed:
-- other schemas in the same database may use it.
drop table if exists dictamesh_billing_audit_log;
drop function if exists dictamesh_billing_refuse_change();
drop function if exists dictamesh_billing_audit_chain();
drop function if exists dictamesh_billing_audit_canonical(
    bigint, timestamptz, text, text, text, text, jsonb);
drop table if exists dictamesh_billing_stripe_webhook_events;
drop table if exists dictamesh_billing_outbox;
drop table if exists dictamesh_billing_credits;
drop table if exists dictamesh_billing_payments;
drop table if exists dictamesh_billing_payment_methods;
drop table if exists dictamesh_billing_invoice_line_items;
drop table if exists dictamesh_billing_invoices;
drop table if exists dictamesh_billing_usage_metrics;
drop table if exists dictamesh_billing_promotions;
drop table if exists dictamesh_billing_subscription_changes;
drop table if exists dictamesh_billing_subscriptions;
drop table if exists dictamesh_billing_organizations;
drop table if exists dictamesh_billing_fx_rates;
drop table if exists dictamesh_billing_pricing_tiers;
drop table if exists dictamesh_billing_price_books;
drop table if exists dictamesh_billing_plan_quotas;
drop table if exists dictamesh_billing_subscription_plans;
drop table if exists dictamesh_billing_metrics;
drop table if exists dictamesh_billing_currencies;
