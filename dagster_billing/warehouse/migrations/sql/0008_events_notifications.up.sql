-- Notifications and customer webhooks (issue 13): who receives what, one delivery per
-- (event, channel, recipient) and per (endpoint, event), and every attempt kept.

-- Each outbox consumer marks the rows it has taken, as the relay does with published_at
-- (a cursor on the id would skip rows of transactions that commit out of id order).
-- created_at is when the row was written: occurred_at is business time (a backdated
-- subscription change occurs in the past), so relay lag is measured from created_at.
alter table dictamesh_billing_outbox
    add column notified_at timestamptz,
    add column webhooks_at timestamptz,
    add column created_at timestamptz not null default now();

create index dictamesh_billing_outbox_unnotified
    on dictamesh_billing_outbox (id) where notified_at is null;
create index dictamesh_billing_outbox_webhooks_pending
    on dictamesh_billing_outbox (id) where webhooks_at is null;

-- Per-organization recipients; without an email row the organization's own email is used.
-- opted_out lists templates this recipient does not want (invoices cannot be opted out).
create table dictamesh_billing_notification_recipients (
    id              bigint generated always as identity primary key,
    organization_id bigint not null references dictamesh_billing_organizations (id),
    channel         text not null check (channel in ('email', 'service')),
    address         text not null check (length(address) > 0),
    opted_out       text[] not null default '{}',
    created_at      timestamptz not null default now(),
    unique (organization_id, channel, address)
);

create table dictamesh_billing_notification_deliveries (
    id              bigint generated always as identity primary key,
    event_id        uuid not null,
    template        text not null,
    channel         text not null check (channel in ('email', 'service')),
    recipient       text not null,
    organization_id bigint references dictamesh_billing_organizations (id),
    status          text not null default 'pending'
                    check (status in ('pending', 'sent', 'failed')),
    attempts        integer not null default 0,
    last_error      text,
    created_at      timestamptz not null default now(),
    sent_at         timestamptz,
    unique (event_id, channel, recipient)
);

create index dictamesh_billing_notification_deliveries_pending
    on dictamesh_billing_notification_deliveries (id) where status = 'pending';

create table dictamesh_billing_notification_attempts (
    delivery_id  bigint not null
                 references dictamesh_billing_notification_deliveries (id) on delete cascade,
    attempt      integer not null check (attempt >= 1),
    ok           boolean not null,
    detail       text,
    attempted_at timestamptz not null default now(),
    primary key (delivery_id, attempt)
);

-- Customer webhook endpoints: each event POSTed, signed with the endpoint's secret.
create table dictamesh_billing_webhook_endpoints (
    id              bigint generated always as identity primary key,
    organization_id bigint not null references dictamesh_billing_organizations (id),
    url             text not null check (url ~ '^https?://'),
    secret          text not null check (length(secret) >= 16),
    event_types     text[],
    status          text not null default 'enabled' check (status in ('enabled', 'disabled')),
    failing_since   timestamptz,
    disabled_at     timestamptz,
    created_at      timestamptz not null default now(),
    unique (organization_id, url)
);

create table dictamesh_billing_webhook_deliveries (
    id               bigint generated always as identity primary key,
    endpoint_id      bigint not null
                     references dictamesh_billing_webhook_endpoints (id) on delete cascade,
    event_id         uuid not null,
    status           text not null default 'pending'
                     check (status in ('pending', 'delivered', 'failed')),
    attempts         integer not null default 0,
    next_attempt_at  timestamptz not null default now(),
    last_status_code integer,
    last_error       text,
    created_at       timestamptz not null default now(),
    delivered_at     timestamptz,
    unique (endpoint_id, event_id)
);

create index dictamesh_billing_webhook_deliveries_due
    on dictamesh_billing_webhook_deliveries (next_attempt_at) where status = 'pending';

create table dictamesh_billing_webhook_attempts (
    delivery_id  bigint not null
                 references dictamesh_billing_webhook_deliveries (id) on delete cascade,
    attempt      integer not null check (attempt >= 1),
    status_code  integer,
    error        text,
    attempted_at timestamptz not null default now(),
    primary key (delivery_id, attempt)
);
