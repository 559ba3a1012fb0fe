-- Re-rating (issue 16): price corrections of issued invoices, applied once.
-- Each row is the difference, for one line of one finalized invoice, between what a
-- corrected catalog charges and what was billed. Rating (int_invoice_lines_rerate) puts
-- it on the subscription's next unfinalized invoice as an adjustment line with this
-- description; the unique key makes applying the same correction twice a no-op.
create table dictamesh_billing_rerate_adjustments (
    id                   bigint generated always as identity primary key,
    organization_id      bigint not null references dictamesh_billing_organizations (id),
    subscription_id      bigint not null references dictamesh_billing_subscriptions (id),
    corrected_invoice_id bigint not null references dictamesh_billing_invoices (id),
    kind                 text not null
                         check (kind in ('subscription_fee', 'seats', 'proration', 'overage')),
    metric               text references dictamesh_billing_metrics (id),
    line_description     text not null,
    period_start         timestamptz,
    period_end           timestamptz,
    description          text not null,
    amount               numeric(20, 6) not null check (amount <> 0),
    currency             char(3) not null references dictamesh_billing_currencies (code),
    catalog_version      text not null,
    window_start         timestamptz not null,
    window_end           timestamptz not null check (window_end > window_start),
    created_by           text not null,
    created_at           timestamptz not null default now(),
    unique (corrected_invoice_id, description)
);

create index dictamesh_billing_rerate_adjustments_subscription
    on dictamesh_billing_rerate_adjustments (subscription_id);
