-- API keys and the idempotency records of POST requests (issue 14).

create table dictamesh_billing_api_keys (
    id              bigint generated always as identity primary key,
    -- shown with the key and kept in clear, so support can tell keys apart
    prefix          text not null unique check (prefix ~ '^[a-z0-9]{8,16}$'),
    -- sha256 of the whole key: the key has 256 random bits, a slow hash adds nothing
    key_hash        char(64) not null unique,
    role            text not null check (role in ('admin', 'finance', 'org_member', 'service')),
    organization_id bigint references dictamesh_billing_organizations (id),
    name            text not null default '',
    created_at      timestamptz not null default now(),
    revoked_at      timestamptz,
    last_used_at    timestamptz,
    -- organization roles see one organization; admin and finance see all
    check ((role in ('org_member', 'service')) = (organization_id is not null))
);

create table dictamesh_billing_api_idempotency_keys (
    api_key_id      bigint not null references dictamesh_billing_api_keys (id),
    idempotency_key text not null check (length(idempotency_key) between 1 and 255),
    request_hash    char(64) not null,
    status          text not null default 'running' check (status in ('running', 'done')),
    response_status integer,
    response_body   bytea,
    response_type   text,
    created_at      timestamptz not null default now(),
    completed_at    timestamptz,
    primary key (api_key_id, idempotency_key)
);

create index dictamesh_billing_api_idempotency_keys_created
    on dictamesh_billing_api_idempotency_keys (created_at);
