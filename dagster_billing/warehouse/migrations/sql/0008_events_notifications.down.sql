drop table dictamesh_billing_webhook_attempts;
drop table dictamesh_billing_webhook_deliveries;
drop table dictamesh_billing_webhook_endpoints;
drop table dictamesh_billing_notification_attempts;
drop table dictamesh_billing_notification_deliveries;
drop table dictamesh_billing_notification_recipients;
alter table dictamesh_billing_outbox
    drop column created_at, drop column webhooks_at, drop column notified_at;
