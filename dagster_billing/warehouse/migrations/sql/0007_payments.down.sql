drop table dictamesh_billing_payment_ledger;
drop table dictamesh_billing_credit_notes;
drop table dictamesh_billing_credit_note_number_counters;
drop index dictamesh_billing_stripe_webhook_events_received;
drop index dictamesh_billing_payments_to_reconcile;
drop index dictamesh_billing_payments_one_in_flight;
alter table dictamesh_billing_payments
    drop constraint dictamesh_billing_payments_manual_reference,
    drop column succeeded_at,
    drop column next_reconcile_at,
    drop column reconcile_attempts,
    drop column amount_refunded,
    drop column reference,
    drop column decline_code,
    drop constraint dictamesh_billing_payments_provider_check,
    drop constraint dictamesh_billing_payments_status_check,
    add constraint dictamesh_billing_payments_status_check check (status in (
        'pending', 'processing', 'succeeded', 'failed', 'canceled', 'refunded'));
