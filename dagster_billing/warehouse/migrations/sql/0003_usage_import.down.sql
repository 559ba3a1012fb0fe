drop table dictamesh_billing_usage_threshold_crossings;
drop table dictamesh_billing_usage_imports;
drop function dictamesh_billing_is_valid(text, text);
