drop function dictamesh_billing_billed_usage(numeric, text, numeric);
drop function dictamesh_billing_usage_seconds(numeric, text, numeric);
drop function dictamesh_billing_period(timestamptz, text, integer);
drop function dictamesh_billing_period_index(timestamptz, timestamptz);
drop function dictamesh_billing_add_months(timestamptz, integer);
