-- Invoice finalization (issue 6): gap-free numbers, immutability, lifecycle.

-- One counter per prefix and calendar year (UTC). Finalization bumps it inside the
-- transaction that writes the invoices, so a rollback also returns the numbers: no gaps.
create table dictamesh_billing_invoice_number_counters (
    prefix     text not null,
    year       smallint not null check (year between 2000 and 9999),
    last_value integer not null check (last_value >= 0),
    updated_at timestamptz not null default now(),
    primary key (prefix, year)
);

-- The draft's key in the rating marts, so adjustment lines can find the invoice they
-- correct; overdue_at is set once, when an open invoice is first seen past its due date;
-- tax_rate is the rate the rating applied, printed on the document.
alter table dictamesh_billing_invoices
    add column invoice_key text unique,
    add column overdue_at timestamptz,
    add column tax_rate numeric(9, 6) check (tax_rate >= 0 and tax_rate < 1);

create index dictamesh_billing_invoices_open_due
    on dictamesh_billing_invoices (due_at) where status = 'open' and overdue_at is null;

create index dictamesh_billing_credits_invoice
    on dictamesh_billing_credits (invoice_id) where invoice_id is not null;

-- A finalized invoice is a sent document: its amounts, numbers and dates never change.
-- Only the lifecycle moves on (status, paid/void/overdue instants, Stripe id, PDF).
create function dictamesh_billing_invoice_guard() returns trigger language plpgsql as $$
begin
    if tg_op = 'DELETE' then
        if old.status <> 'draft' then
            raise exception 'invoice %: a finalized invoice cannot be deleted', old.number
                using errcode = 'integrity_constraint_violation';
        end if;
        return old;
    end if;
    if old.status = 'draft' then
        if new.status not in ('draft', 'open', 'paid') then
            raise exception 'invoice %: draft -> % is not allowed', old.id, new.status
                using errcode = 'integrity_constraint_violation';
        end if;
        return new;
    end if;
    if (new.number, new.invoice_key, new.organization_id, new.subscription_id,
        new.period_start, new.period_end, new.currency, new.subtotal, new.discount,
        new.tax_rate, new.tax, new.total, new.credits_applied, new.amount_due,
        new.issued_at, new.due_at)
       is distinct from
       (old.number, old.invoice_key, old.organization_id, old.subscription_id,
        old.period_start, old.period_end, old.currency, old.subtotal, old.discount,
        old.tax_rate, old.tax, old.total, old.credits_applied, old.amount_due,
        old.issued_at, old.due_at)
    then
        raise exception 'invoice %: finalized invoices are immutable (amounts, number, dates)',
            old.number using errcode = 'integrity_constraint_violation';
    end if;
    if new.status <> old.status and not (
        (old.status = 'open' and new.status in ('paid', 'void', 'uncollectible'))
        or (old.status = 'uncollectible' and new.status in ('paid', 'void'))
    ) then
        raise exception 'invoice %: status % -> % is not allowed', old.number, old.status,
            new.status using errcode = 'integrity_constraint_violation';
    end if;
    return new;
end
$$;

create trigger dictamesh_billing_invoices_guard
    before update or delete on dictamesh_billing_invoices
    for each row execute function dictamesh_billing_invoice_guard();

-- Lines may only be written while their invoice is a draft. Inserts are checked once per
-- statement (finalization COPYs thousands of lines); updates and deletes, rare, per row.
create function dictamesh_billing_invoice_line_guard() returns trigger language plpgsql as $$
declare
    target_status text;
begin
    select status into target_status from dictamesh_billing_invoices where id = old.invoice_id;
    if target_status is distinct from 'draft' then
        raise exception 'invoice line: % refused, invoice % is %', tg_op, old.invoice_id,
            target_status using errcode = 'integrity_constraint_violation';
    end if;
    return case when tg_op = 'DELETE' then old else new end;
end
$$;

create function dictamesh_billing_invoice_line_insert_guard() returns trigger
language plpgsql as $$
declare
    offending bigint;
begin
    select n.invoice_id into offending
    from inserted_lines n join dictamesh_billing_invoices i on i.id = n.invoice_id
    where i.status <> 'draft' limit 1;
    if offending is not null then
        raise exception 'invoice line: INSERT refused, invoice % is finalized', offending
            using errcode = 'integrity_constraint_violation';
    end if;
    return null;
end
$$;

create trigger dictamesh_billing_invoice_line_items_guard
    before update or delete on dictamesh_billing_invoice_line_items
    for each row execute function dictamesh_billing_invoice_line_guard();

create trigger dictamesh_billing_invoice_line_items_insert_guard
    after insert on dictamesh_billing_invoice_line_items
    referencing new table as inserted_lines
    for each statement execute function dictamesh_billing_invoice_line_insert_guard();
