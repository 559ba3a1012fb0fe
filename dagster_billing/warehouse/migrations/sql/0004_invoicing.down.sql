-- Reverse of 0004_invoicing.up.sql.
drop trigger if exists dictamesh_billing_invoice_line_items_insert_guard
    on dictamesh_billing_invoice_line_items;
drop function if exists dictamesh_billing_invoice_line_insert_guard();
drop trigger if exists dictamesh_billing_invoice_line_items_guard
    on dictamesh_billing_invoice_line_items;
drop function if exists dictamesh_billing_invoice_line_guard();
drop trigger if exists dictamesh_billing_invoices_guard on dictamesh_billing_invoices;
drop function if exists dictamesh_billing_invoice_guard();
drop index if exists dictamesh_billing_credits_invoice;
drop index if exists dictamesh_billing_invoices_open_due;
alter table dictamesh_billing_invoices
    drop column if exists tax_rate,
    drop column if exists overdue_at,
    drop column if exists invoice_key;
drop table if exists dictamesh_billing_invoice_number_counters;
