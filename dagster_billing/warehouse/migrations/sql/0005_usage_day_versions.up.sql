-- Which days of the daily rollup still equal their hourly rows (issue 5: rating reads
-- whole UTC days from dictamesh_billing_usage_daily, 24x fewer rows than the hours).
-- Every statement that writes hourly rows bumps the version of the days it touched (the
-- trigger below; the bulk import's partition swap bumps them itself); the rollup records
-- the version it summed. A day is read from the rollup only while the two are equal, so
-- a rollup that missed a late write is never billed: that day is read from the hours.
create table dictamesh_billing_usage_day_versions (
    day               date primary key,
    version           bigint not null default 1 check (version >= 1),
    rolled_up_version bigint check (rolled_up_version <= version),
    changed_at        timestamptz not null default now()
);

-- A write to these days: bump each one's version, in day order so two writers of the
-- same days lock them in the same order. The bulk import's partition swap calls it.
create function dictamesh_billing_usage_days_written(days date[]) returns void
language sql as $$
    insert into dictamesh_billing_usage_day_versions as v (day)
    select distinct d from unnest(days) as d order by 1
    on conflict (day) do update set version = v.version + 1, changed_at = now();
$$;

create function dictamesh_billing_usage_days_changed() returns trigger language plpgsql as $$
begin
    perform dictamesh_billing_usage_days_written(
        array(select distinct (hour_start at time zone 'UTC')::date from changed_rows));
    return null;
end $$;

-- Statement-level: one upsert per statement, however many rows. Rows never move between
-- hours (hour_start is part of the key), so an update's new rows name all its days.
create trigger dictamesh_billing_usage_inserted after insert on dictamesh_billing_usage_metrics
    referencing new table as changed_rows
    for each statement execute function dictamesh_billing_usage_days_changed();
create trigger dictamesh_billing_usage_updated after update on dictamesh_billing_usage_metrics
    referencing new table as changed_rows
    for each statement execute function dictamesh_billing_usage_days_changed();
create trigger dictamesh_billing_usage_deleted after delete on dictamesh_billing_usage_metrics
    referencing old table as changed_rows
    for each statement execute function dictamesh_billing_usage_days_changed();
