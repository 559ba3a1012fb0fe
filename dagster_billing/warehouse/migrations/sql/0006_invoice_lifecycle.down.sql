-- Back to 0005: no set-once trigger, 0004's constraints and line kinds.
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

drop trigger dictamesh_billing_invoices_set_once on dictamesh_billing_invoices;
drop function dictamesh_billing_invoice_set_once();
