-- The relay's progress (issue 13). Marking a row published used to update the outbox row
-- itself: a wide row (jsonb payload) whose update could never be HOT, because
-- published_at was in the predicate of the partial index that found unpublished rows, so
-- each mark rewrote the row and added an entry to every index (~18 us a row, most of the
-- relay's time). Now publication is two narrow tables, and the outbox rows are not touched:
--
-- * dictamesh_billing_outbox_unpublished: the ids waiting for the relay. A statement
--   trigger queues every inserted outbox row in the writer's transaction, so a row is
--   queued exactly when it becomes visible, whatever order transactions commit in (a
--   high-water mark on the id would skip a row whose transaction commits late).
-- * dictamesh_billing_outbox_published: when each row was published, insert-only.
--
-- The relay moves ids from the first to the second in one statement, after the broker's
-- delivery report; a row is in exactly one of the two, and leaves both when it is
-- deleted (statement triggers, not foreign keys: a key check would cost every outbox
-- insert and every mark a lookup, ~30% more per written row).
drop index dictamesh_billing_outbox_unpublished;  -- its name is the queue's now

create table dictamesh_billing_outbox_unpublished (
    id bigint primary key
);

create table dictamesh_billing_outbox_published (
    id           bigint primary key,
    published_at timestamptz not null default now()
);

insert into dictamesh_billing_outbox_unpublished (id)
select id from dictamesh_billing_outbox where published_at is null;

insert into dictamesh_billing_outbox_published (id, published_at)
select id, published_at from dictamesh_billing_outbox where published_at is not null;

alter table dictamesh_billing_outbox drop column published_at;

create function dictamesh_billing_outbox_queue() returns trigger
language plpgsql as $$
begin
    insert into dictamesh_billing_outbox_unpublished (id) select id from inserted;
    return null;
end;
$$;

create trigger dictamesh_billing_outbox_queue
    after insert on dictamesh_billing_outbox
    referencing new table as inserted
    for each statement execute function dictamesh_billing_outbox_queue();

create function dictamesh_billing_outbox_forget() returns trigger
language plpgsql as $$
begin
    delete from dictamesh_billing_outbox_unpublished u using deleted d where u.id = d.id;
    delete from dictamesh_billing_outbox_published p using deleted d where p.id = d.id;
    return null;
end;
$$;

create trigger dictamesh_billing_outbox_forget
    after delete on dictamesh_billing_outbox
    referencing old table as deleted
    for each statement execute function dictamesh_billing_outbox_forget();
