-- Payments (issue 18): attempts with unknown outcomes, reconciliation backoff, manual
-- payments, a money ledger, refunds as credit notes with their own gap-free numbers.

-- An attempt row is committed before the Stripe call ('pending'); 'unknown' is a call
-- that timed out or crashed before its outcome was recorded; 'requires_action' waits for
-- the customer (3-D Secure). Manual payments (bank transfers) are provider 'manual'.
alter table dictamesh_billing_payments
    drop constraint dictamesh_billing_payments_status_check,
    add constraint dictamesh_billing_payments_status_check check (status in (
        'pending', 'unknown', 'processing', 'requires_action', 'succeeded', 'failed',
        'canceled', 'refunded')),
    add constraint dictamesh_billing_payments_provider_check
        check (provider in ('stripe', 'manual')),
    add column decline_code text,
    add column reference text,
    add column amount_refunded numeric(20, 6) not null default 0
        check (amount_refunded >= 0 and amount_refunded <= amount),
    add column reconcile_attempts integer not null default 0 check (reconcile_attempts >= 0),
    add column next_reconcile_at timestamptz,
    add column succeeded_at timestamptz,
    add constraint dictamesh_billing_payments_manual_reference
        check (provider <> 'manual' or reference is not null);

-- At most one attempt in flight per invoice: two runs, or a run and the sensor, can never
-- both be charging the same invoice.
create unique index dictamesh_billing_payments_one_in_flight
    on dictamesh_billing_payments (invoice_id)
    where status in ('pending', 'unknown', 'processing', 'requires_action');

create index dictamesh_billing_payments_to_reconcile
    on dictamesh_billing_payments (next_reconcile_at)
    where status in ('pending', 'unknown', 'processing', 'requires_action');

create index dictamesh_billing_stripe_webhook_events_received
    on dictamesh_billing_stripe_webhook_events (received_at) where status = 'received';

-- Credit notes: a refund's document, numbered CN-YYYY-NNNNNN without gaps per year.
create table dictamesh_billing_credit_note_number_counters (
    prefix     text not null,
    year       smallint not null check (year between 2000 and 9999),
    last_value integer not null check (last_value >= 0),
    updated_at timestamptz not null default now(),
    primary key (prefix, year)
);

create table dictamesh_billing_credit_notes (
    id               bigint generated always as identity primary key,
    number           text not null unique,
    invoice_id       bigint not null references dictamesh_billing_invoices (id),
    payment_id       bigint not null references dictamesh_billing_payments (id),
    amount           numeric(20, 6) not null check (amount > 0),
    currency         char(3) not null references dictamesh_billing_currencies (code),
    reason           text not null check (reason <> ''),
    status           text not null default 'pending'
                     check (status in ('pending', 'succeeded', 'failed')),
    idempotency_key  text not null unique,
    stripe_refund_id text unique,
    issued_at        timestamptz not null,
    pdf_path         text,
    pdf_sha256       char(64),
    created_at       timestamptz not null default now(),
    updated_at       timestamptz not null default now()
);

-- Money that moved, signed: + a payment received, - a refund paid out. One row per
-- business fact (the unique keys), written in the transaction that records the fact.
create table dictamesh_billing_payment_ledger (
    id              bigint generated always as identity primary key,
    organization_id bigint not null references dictamesh_billing_organizations (id),
    invoice_id      bigint not null references dictamesh_billing_invoices (id),
    payment_id      bigint not null references dictamesh_billing_payments (id),
    credit_note_id  bigint references dictamesh_billing_credit_notes (id),
    entry_type      text not null check (entry_type in ('payment', 'refund')),
    amount          numeric(20, 6) not null check (amount <> 0),
    currency        char(3) not null references dictamesh_billing_currencies (code),
    occurred_at     timestamptz not null,
    created_at      timestamptz not null default now(),
    check ((entry_type = 'payment') = (amount > 0)),
    check ((entry_type = 'refund') = (credit_note_id is not null)),
    unique (payment_id, entry_type, credit_note_id)
);

create unique index dictamesh_billing_payment_ledger_one_payment
    on dictamesh_billing_payment_ledger (payment_id) where entry_type = 'payment';
