-- Bulk usage import (issue 4) and usage quota threshold crossings.

-- Whether text parses, without raising: bulk import validates whole files in SQL and
-- must report every bad row, not stop at the first. PostgreSQL 16+ answers with
-- pg_input_is_valid (inlined, fast); older servers get an exception-catching fallback.
do $$
begin
    if current_setting('server_version_num')::int >= 160000 then
        create function dictamesh_billing_is_valid(value text, type_name text)
            returns boolean language sql stable
            as 'select pg_input_is_valid(value, type_name)';
    else
        create function dictamesh_billing_is_valid(value text, type_name text)
            returns boolean language plpgsql stable as $f$
        begin
            execute format('select %L::%s', value, type_name);
            return true;
        exception when others then
            return false;
        end
        $f$;
    end if;
end
$$;

create table dictamesh_billing_usage_imports (
    id             bigint generated always as identity primary key,
    file_name      text not null,
    file_sha256    char(64) not null,
    rows_read      bigint not null check (rows_read >= 0),
    rows_invalid   bigint not null check (rows_invalid >= 0),
    rows_duplicate bigint not null check (rows_duplicate >= 0),
    rows_written   bigint not null check (rows_written >= 0),
    imported_at    timestamptz not null default now()
);

create table dictamesh_billing_usage_threshold_crossings (
    organization_id bigint not null references dictamesh_billing_organizations (id),
    metric          text not null references dictamesh_billing_metrics (id),
    period_start    timestamptz not null,
    threshold       smallint not null check (threshold in (80, 100)),
    period_end      timestamptz not null check (period_end > period_start),
    plan_id         text not null references dictamesh_billing_subscription_plans (id),
    quota           numeric(24, 6) not null check (quota >= 0),
    usage           numeric(24, 6) not null check (usage >= 0),
    event_id        uuid not null unique,
    crossed_at      timestamptz not null default now(),
    primary key (organization_id, metric, period_start, threshold)
);
