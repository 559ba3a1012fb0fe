drop trigger dictamesh_billing_outbox_forget on dictamesh_billing_outbox;
drop function dictamesh_billing_outbox_forget();
drop trigger dictamesh_billing_outbox_queue on dictamesh_billing_outbox;
drop function dictamesh_billing_outbox_queue();

alter table dictamesh_billing_outbox add column published_at timestamptz;

update dictamesh_billing_outbox o set published_at = p.published_at
from dictamesh_billing_outbox_published p where p.id = o.id;

drop table dictamesh_billing_outbox_published;
drop table dictamesh_billing_outbox_unpublished;

create index dictamesh_billing_outbox_unpublished
    on dictamesh_billing_outbox (id) where published_at is null;
