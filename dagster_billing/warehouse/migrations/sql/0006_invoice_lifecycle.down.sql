-- Back to 0004's guard, constraints and line kinds.
alter table dictamesh_billing_invoice_line_items
    drop constraint dictamesh_billing_invoice_line_items_kind_check,
    add constraint dictamesh_billing_invoice_line_items_kind_check
        check (kind in ('subscription_fee', 'seats', 'proration', 'overage', 'adjustment'));

alter table dictamesh_billing_invoices
    drop constraint dictamesh_billing_invoices_void_reason,
    drop constraint dictamesh_billing_invoices_voided_at,
    drop constraint dictamesh_billing_invoices_paid_at,
    add constraint dictamesh_billing_invoices_check3
        check (status <> 'void' or void_reason is not null);

create or replace function dictamesh_billing_invoice_guard() returns trigger language plpgsql as $$
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
