-- The invoice lifecycle in the database (issue 17): a status comes with its fields, and
-- what a finalized invoice has recorded about itself is written once.

-- A status and its instants are set together, in every state: paid <=> paid_at,
-- void <=> voided_at and a non-blank void_reason (which replaces 0001's weaker check3).
alter table dictamesh_billing_invoices
    drop constraint dictamesh_billing_invoices_check3,
    add constraint dictamesh_billing_invoices_paid_at
        check ((status = 'paid') = (paid_at is not null)),
    add constraint dictamesh_billing_invoices_voided_at
        check ((status = 'void') = (voided_at is not null)),
    add constraint dictamesh_billing_invoices_void_reason
        check ((status = 'void') = (coalesce(btrim(void_reason), '') <> ''));

-- Usage lines: an invoice shows each metric's usage against its included quantity at
-- zero amount when no overage line does (a zero invoice must say why it is zero).
alter table dictamesh_billing_invoice_line_items
    drop constraint dictamesh_billing_invoice_line_items_kind_check,
    add constraint dictamesh_billing_invoice_line_items_kind_check
        check (kind in ('subscription_fee', 'seats', 'proration', 'overage', 'adjustment',
                        'usage'));

-- Beside 0004's guard (which keeps statuses on their allowed paths: paid and void are
-- final): once a finalized invoice records when it was paid, voided or found overdue,
-- why it was voided, or its document's hash, that value never changes (the PDF a
-- customer holds is the one whose hash we stored).
create function dictamesh_billing_invoice_set_once() returns trigger language plpgsql as $$
begin
    if old.status <> 'draft' and (
        (old.paid_at is not null and new.paid_at is distinct from old.paid_at)
        or (old.voided_at is not null and new.voided_at is distinct from old.voided_at)
        or (old.void_reason is not null and new.void_reason is distinct from old.void_reason)
        or (old.overdue_at is not null and new.overdue_at is distinct from old.overdue_at)
        or (old.pdf_sha256 is not null and new.pdf_sha256 is distinct from old.pdf_sha256)
    ) then
        raise exception 'invoice %: paid_at, voided_at, void_reason, overdue_at and '
            'pdf_sha256 are set once', old.number
            using errcode = 'integrity_constraint_violation';
    end if;
    return new;
end
$$;

create trigger dictamesh_billing_invoices_set_once
    before update on dictamesh_billing_invoices
    for each row execute function dictamesh_billing_invoice_set_once();
