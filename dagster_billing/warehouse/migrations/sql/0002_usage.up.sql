-- Usage ingestion (issue 4): daily rollup, rejects, ingestion log, adjustments to hours
-- that finalized invoices already billed. Quantities are in the catalog's raw units:
-- calls, GB (10^9 bytes; storage: the hour's average GB).

create table dictamesh_billing_usage_daily (
    organization_id bigint not null references dictamesh_billing_organizations (id),
    metric          text not null references dictamesh_billing_metrics (id),
    day             date not null,
    quantity        numeric(24, 6) not null check (quantity >= 0),
    hours           smallint not null check (hours between 1 and 24),
    updated_at      timestamptz not null default now(),
    primary key (organization_id, metric, day)
);

create table dictamesh_billing_usage_rejects (
    id           bigint generated always as identity primary key,
    hour_start   timestamptz not null,
    source       text not null check (source in ('prometheus', 'import')),
    organization text,
    metric       text,
    series       jsonb not null default '{}'::jsonb,
    sample_at    timestamptz,
    value        text,
    reason       text not null,
    run_id       text,
    detected_at  timestamptz not null default now()
);

create index dictamesh_billing_usage_rejects_hour_idx
    on dictamesh_billing_usage_rejects (hour_start, source);

create table dictamesh_billing_usage_ingestions (
    id           bigint generated always as identity primary key,
    hour_start   timestamptz not null
                 check (date_trunc('hour', hour_start, 'UTC') = hour_start),
    run_id       text,
    series       integer not null check (series >= 0),
    samples      integer not null check (samples >= 0),
    rows_written integer not null check (rows_written >= 0),
    rows_changed integer not null check (rows_changed >= 0),
    rejects      integer not null check (rejects >= 0),
    ingested_at  timestamptz not null default now()
);

create index dictamesh_billing_usage_ingestions_hour_idx
    on dictamesh_billing_usage_ingestions (hour_start);

create table dictamesh_billing_usage_adjustments (
    id              bigint generated always as identity primary key,
    organization_id bigint not null references dictamesh_billing_organizations (id),
    metric          text not null references dictamesh_billing_metrics (id),
    hour_start      timestamptz not null,
    invoice_id      bigint not null references dictamesh_billing_invoices (id),
    old_quantity    numeric(24, 6) not null check (old_quantity >= 0),
    new_quantity    numeric(24, 6) not null check (new_quantity >= 0),
    source          text not null check (source in ('prometheus', 'import', 'api')),
    detected_at     timestamptz not null default now(),
    consumed_at     timestamptz,
    check (old_quantity <> new_quantity)
);

create index dictamesh_billing_usage_adjustments_pending
    on dictamesh_billing_usage_adjustments (organization_id) where consumed_at is null;
