-- DictaMesh Billing warehouse, first schema.
-- Money is numeric(20, 6); statuses are text with CHECK constraints (cheaper to
-- evolve than enum types); every timestamp is timestamptz in UTC.

create extension if not exists btree_gist;

-- Catalog -------------------------------------------------------------------

create table dictamesh_billing_currencies (
    code            char(3) primary key check (code ~ '^[A-Z]{3}$'),
    minor_units     smallint not null check (minor_units between 0 and 4),
    catalog_factor  numeric(20, 6) not null check (catalog_factor > 0),
    catalog_version text not null,
    updated_at      timestamptz not null default now()
);

create table dictamesh_billing_metrics (
    id              text primary key check (id ~ '^[a-z_]+$'),
    display_name    text not null,
    unit            text not null,
    unit_size       numeric(20, 6) not null check (unit_size > 0),
    aggregation     text not null check (aggregation in ('sum', 'average')),
    catalog_version text not null,
    updated_at      timestamptz not null default now()
);

create table dictamesh_billing_subscription_plans (
    id                   text primary key check (id ~ '^[a-z0-9_]+$'),
    name                 text not null,
    description          text not null default '',
    included_seats       integer not null check (included_seats >= 0),
    seats_sellable       boolean not null,
    max_adapters         integer check (max_adapters > 0),
    bills_overage        boolean not null,
    sort_order           integer not null,
    active               boolean not null default true,
    catalog_version      text not null,
    created_at           timestamptz not null default now(),
    updated_at           timestamptz not null default now()
);

create table dictamesh_billing_plan_quotas (
    plan_id           text not null references dictamesh_billing_subscription_plans (id),
    metric            text not null references dictamesh_billing_metrics (id),
    included_quantity numeric(24, 6) not null check (included_quantity >= 0),
    catalog_version   text not null,
    primary key (plan_id, metric)
);

create table dictamesh_billing_price_books (
    plan_id            text not null references dictamesh_billing_subscription_plans (id),
    currency           char(3) not null references dictamesh_billing_currencies (code),
    monthly_fee        numeric(20, 6) not null check (monthly_fee >= 0),
    annual_fee         numeric(20, 6) not null check (annual_fee >= 0),
    seat_price_monthly numeric(20, 6) check (seat_price_monthly >= 0),
    source             text not null default 'catalog' check (source in ('catalog', 'operator')),
    catalog_version    text not null,
    updated_at         timestamptz not null default now(),
    primary key (plan_id, currency)
);

create table dictamesh_billing_pricing_tiers (
    metric          text not null references dictamesh_billing_metrics (id),
    currency        char(3) not null references dictamesh_billing_currencies (code),
    tier            smallint not null check (tier >= 1),
    lower_bound     numeric(24, 6) not null check (lower_bound >= 0),
    upper_bound     numeric(24, 6) check (upper_bound > lower_bound),
    unit_price      numeric(20, 6) not null check (unit_price >= 0),
    source          text not null default 'catalog' check (source in ('catalog', 'operator')),
    catalog_version text not null,
    updated_at      timestamptz not null default now(),
    primary key (metric, currency, tier),
    unique (metric, currency, lower_bound)
);

create table dictamesh_billing_fx_rates (
    currency      char(3) not null references dictamesh_billing_currencies (code),
    valid_from    date not null,
    usd_per_unit  numeric(20, 10) not null check (usd_per_unit > 0),
    source        text not null,
    primary key (currency, valid_from)
);

-- Customers and subscriptions ----------------------------------------------

create table dictamesh_billing_organizations (
    id                 bigint generated always as identity primary key,
    external_id        text not null unique,
    name               text not null,
    email              text,
    currency           char(3) not null references dictamesh_billing_currencies (code),
    locale             text not null default 'en_US',
    tax_rate           numeric(9, 6) check (tax_rate >= 0 and tax_rate < 1),
    tax_exempt         boolean not null default false,
    tax_jurisdiction   text,
    billing_address    jsonb not null default '{}'::jsonb,
    stripe_customer_id text unique,
    status             text not null default 'active'
                       check (status in ('active', 'suspended', 'closed')),
    metadata           jsonb not null default '{}'::jsonb,
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now()
);

create table dictamesh_billing_subscriptions (
    id                     bigint generated always as identity primary key,
    external_id            text not null unique,
    organization_id        bigint not null references dictamesh_billing_organizations (id),
    plan_id                text not null references dictamesh_billing_subscription_plans (id),
    billing_cycle          text not null check (billing_cycle in ('monthly', 'annual')),
    status                 text not null default 'active'
                           check (status in ('active', 'past_due', 'canceled', 'incomplete')),
    seats                  integer not null check (seats >= 1),
    pricing_mode           text not null default 'graduated'
                           check (pricing_mode in ('graduated', 'volume')),
    price_override         numeric(20, 6) check (price_override >= 0),
    billing_anchor         timestamptz not null,
    started_at             timestamptz not null,
    current_period_start   timestamptz,
    current_period_end     timestamptz,
    cancel_at              timestamptz check (cancel_at > started_at),
    canceled_at            timestamptz,
    stripe_subscription_id text unique,
    metadata               jsonb not null default '{}'::jsonb,
    created_at             timestamptz not null default now(),
    updated_at             timestamptz not null default now(),
    -- docs/rate-card.md, one subscription per organization: one at a time.
    constraint dictamesh_billing_subscriptions_no_overlap exclude using gist (
        organization_id with =,
        tstzrange(started_at, coalesce(cancel_at, 'infinity'::timestamptz)) with &&
    )
);

create table dictamesh_billing_subscription_changes (
    id              bigint generated always as identity primary key,
    subscription_id bigint not null references dictamesh_billing_subscriptions (id),
    effective_at    timestamptz not null,
    plan_id         text references dictamesh_billing_subscription_plans (id),
    seats           integer check (seats >= 1),
    reason          text not null default '',
    created_at      timestamptz not null default now(),
    unique (subscription_id, effective_at),
    check (plan_id is not null or seats is not null)
);

create table dictamesh_billing_promotions (
    id               bigint generated always as identity primary key,
    organization_id  bigint not null references dictamesh_billing_organizations (id),
    code             text not null,
    position         integer not null check (position >= 1),
    percent_off      numeric(9, 6) check (percent_off > 0 and percent_off <= 100),
    amount_off       numeric(20, 6) check (amount_off > 0),
    duration_periods integer check (duration_periods >= 1),
    created_at       timestamptz not null default now(),
    unique (organization_id, position),
    unique (organization_id, code),
    check ((percent_off is null) <> (amount_off is null))
);

-- Usage (range-partitioned by day on hour_start; see docs/DECISIONLOG.md) ---

create table dictamesh_billing_usage_metrics (
    organization_id bigint not null references dictamesh_billing_organizations (id),
    metric          text not null references dictamesh_billing_metrics (id),
    hour_start      timestamptz not null
                    check (date_trunc('hour', hour_start, 'UTC') = hour_start),
    quantity        numeric(24, 6) not null check (quantity >= 0),
    source          text not null check (source in ('prometheus', 'import', 'api')),
    idempotency_key text,
    ingested_at     timestamptz not null default now(),
    primary key (organization_id, metric, hour_start)
) partition by range (hour_start);

create index dictamesh_billing_usage_metrics_hour_idx
    on dictamesh_billing_usage_metrics (hour_start);

-- Invoices and payments -----------------------------------------------------

create table dictamesh_billing_invoices (
    id                 bigint generated always as identity primary key,
    number             text unique,
    organization_id    bigint not null references dictamesh_billing_organizations (id),
    subscription_id    bigint not null references dictamesh_billing_subscriptions (id),
    period_start       timestamptz not null,
    period_end         timestamptz not null check (period_end > period_start),
    currency           char(3) not null references dictamesh_billing_currencies (code),
    status             text not null default 'draft'
                       check (status in ('draft', 'open', 'paid', 'void', 'uncollectible')),
    subtotal           numeric(20, 6) not null,
    discount           numeric(20, 6) not null default 0 check (discount >= 0),
    tax                numeric(20, 6) not null default 0 check (tax >= 0),
    total              numeric(20, 6) not null check (total >= 0),
    credits_applied    numeric(20, 6) not null default 0 check (credits_applied >= 0),
    amount_due         numeric(20, 6) not null check (amount_due >= 0),
    issued_at          timestamptz,
    due_at             timestamptz,
    paid_at            timestamptz,
    voided_at          timestamptz,
    void_reason        text,
    stripe_invoice_id  text unique,
    pdf_path           text,
    pdf_sha256         char(64),
    created_at         timestamptz not null default now(),
    updated_at         timestamptz not null default now(),
    unique (subscription_id, period_start),
    check (amount_due = total - credits_applied),
    check (status = 'draft' or number is not null),
    check (status <> 'void' or void_reason is not null)
);

create table dictamesh_billing_invoice_line_items (
    id                 bigint generated always as identity primary key,
    invoice_id         bigint not null references dictamesh_billing_invoices (id),
    line_number        integer not null check (line_number >= 1),
    kind               text not null
                       check (kind in ('subscription_fee', 'seats', 'proration', 'overage',
                                       'adjustment')),
    description        text not null,
    metric             text references dictamesh_billing_metrics (id),
    quantity           numeric(24, 6) not null,
    unit_amount        numeric(20, 6),
    amount             numeric(20, 6) not null,
    period_start       timestamptz,
    period_end         timestamptz,
    tier_detail        jsonb not null default '[]'::jsonb,
    adjusts_invoice_id bigint references dictamesh_billing_invoices (id),
    created_at         timestamptz not null default now(),
    unique (invoice_id, line_number)
);

create table dictamesh_billing_payment_methods (
    id                       bigint generated always as identity primary key,
    organization_id          bigint not null references dictamesh_billing_organizations (id),
    stripe_payment_method_id text not null unique,
    kind                     text not null default 'card',
    brand                    text,
    last4                    char(4),
    exp_month                smallint check (exp_month between 1 and 12),
    exp_year                 smallint,
    is_default               boolean not null default false,
    created_at               timestamptz not null default now()
);

create unique index dictamesh_billing_payment_methods_one_default
    on dictamesh_billing_payment_methods (organization_id) where is_default;

create table dictamesh_billing_payments (
    id                       bigint generated always as identity primary key,
    invoice_id               bigint not null references dictamesh_billing_invoices (id),
    attempt                  integer not null check (attempt >= 1),
    amount                   numeric(20, 6) not null check (amount > 0),
    currency                 char(3) not null references dictamesh_billing_currencies (code),
    provider                 text not null default 'stripe',
    status                   text not null default 'pending'
                             check (status in ('pending', 'processing', 'succeeded', 'failed',
                                               'canceled', 'refunded')),
    idempotency_key          text not null unique,
    stripe_payment_intent_id text unique,
    payment_method_id        bigint references dictamesh_billing_payment_methods (id),
    failure_code             text,
    failure_message          text,
    next_retry_at            timestamptz,
    created_at               timestamptz not null default now(),
    updated_at               timestamptz not null default now(),
    unique (invoice_id, attempt)
);

-- Credits: a ledger. A grant row holds the granted amount; applications,
-- reversals and expirations are signed rows pointing at their grant.

create table dictamesh_billing_credits (
    id              bigint generated always as identity primary key,
    organization_id bigint not null references dictamesh_billing_organizations (id),
    entry_type      text not null
                    check (entry_type in ('grant', 'application', 'reversal', 'expiration')),
    credit_type     text not null
                    check (credit_type in ('prepaid', 'goodwill', 'promotion', 'balance')),
    grant_id        bigint references dictamesh_billing_credits (id),
    invoice_id      bigint references dictamesh_billing_invoices (id),
    amount          numeric(20, 6) not null,
    currency        char(3) not null references dictamesh_billing_currencies (code),
    expires_at      timestamptz,
    description     text not null default '',
    idempotency_key text unique,
    created_at      timestamptz not null default now(),
    check ((entry_type = 'grant') = (grant_id is null)),
    check ((entry_type in ('grant', 'reversal')) = (amount > 0)),
    unique (grant_id, invoice_id, entry_type)
);

-- Events, webhooks, audit ---------------------------------------------------

create table dictamesh_billing_outbox (
    id             bigint generated always as identity primary key,
    event_id       uuid not null unique,
    event_type     text not null check (event_type ~ '^billing\.[a-z_]+\.[a-z_]+$'),
    aggregate_type text not null,
    aggregate_id   text not null,
    dedupe_key     text unique,
    payload        jsonb not null,
    headers        jsonb not null default '{}'::jsonb,
    occurred_at    timestamptz not null default now(),
    published_at   timestamptz,
    attempts       integer not null default 0,
    last_error     text
);

create index dictamesh_billing_outbox_unpublished
    on dictamesh_billing_outbox (id) where published_at is null;

create table dictamesh_billing_stripe_webhook_events (
    stripe_event_id    text primary key,
    event_type         text not null,
    payload            jsonb not null,
    signature_verified boolean not null,
    received_at        timestamptz not null default now(),
    processed_at       timestamptz,
    status             text not null default 'received'
                       check (status in ('received', 'processed', 'failed', 'ignored')),
    error              text
);

create table dictamesh_billing_audit_log (
    id          bigint primary key,
    occurred_at timestamptz not null default now(),
    actor       text not null,
    action      text not null,
    entity_type text not null,
    entity_id   text not null,
    payload     jsonb not null default '{}'::jsonb,
    prev_hash   char(64) not null,
    hash        char(64) not null unique
);

create sequence dictamesh_billing_audit_log_id_seq owned by dictamesh_billing_audit_log.id;

-- The canonical text of an audit row; verification recomputes the chain from it.
create function dictamesh_billing_audit_canonical(
    row_id bigint, occurred timestamptz, actor text, action text,
    entity_type text, entity_id text, payload jsonb
) returns text language sql immutable as $$
    select concat_ws('|', row_id::text,
                     to_char(occurred at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"'),
                     actor, action, entity_type, entity_id, payload::text)
$$;

-- Ids are taken after the lock, so id order is chain order even under concurrency.
create function dictamesh_billing_audit_chain() returns trigger language plpgsql as $$
declare
    previous char(64);
begin
    perform pg_advisory_xact_lock(hashtext('dictamesh_billing_audit_log'));
    new.id := nextval('dictamesh_billing_audit_log_id_seq');
    new.occurred_at := coalesce(new.occurred_at, now());
    select hash into previous from dictamesh_billing_audit_log order by id desc limit 1;
    new.prev_hash := coalesce(previous, repeat('0', 64));
    new.hash := encode(sha256(convert_to(
        new.prev_hash || dictamesh_billing_audit_canonical(
            new.id, new.occurred_at, new.actor, new.action,
            new.entity_type, new.entity_id, new.payload),
        'UTF8')), 'hex');
    return new;
end
$$;

create function dictamesh_billing_refuse_change() returns trigger language plpgsql as $$
begin
    raise exception '% is append-only: % refused', tg_table_name, tg_op
        using errcode = 'insufficient_privilege';
end
$$;

create trigger dictamesh_billing_audit_log_chain
    before insert on dictamesh_billing_audit_log
    for each row execute function dictamesh_billing_audit_chain();

create trigger dictamesh_billing_audit_log_append_only
    before update or delete on dictamesh_billing_audit_log
    for each row execute function dictamesh_billing_refuse_change();

create trigger dictamesh_billing_audit_log_no_truncate
    before truncate on dictamesh_billing_audit_log
    for each statement execute function dictamesh_billing_refuse_change();
