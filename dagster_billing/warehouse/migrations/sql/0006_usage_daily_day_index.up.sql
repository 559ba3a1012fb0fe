-- The billing run reads the rollup for the days of the periods it bills, about a month;
-- the primary key leads with the organization, so without this it reads every day that
-- retention keeps (dbt_project/models/intermediate/int_usage_by_invoice.sql).
create index dictamesh_billing_usage_daily_day on dictamesh_billing_usage_daily (day);
