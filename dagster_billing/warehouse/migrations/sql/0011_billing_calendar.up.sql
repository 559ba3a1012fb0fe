-- The billing calendar (docs/rate-card.md: billing periods) and how a period's usage is
-- counted, defined once: the dbt models compile to calls of these functions
-- (dbt_project/macros/billing_calendar.sql) and the Python that needs a period now (quota
-- thresholds, cancellation at period end, renewal reminders, the usage API) queries them
-- (dagster_billing/warehouse/calendar.py). Dates are computed in UTC whatever the
-- session's time zone. Immutable plain SQL, so the planner inlines them into the models.

-- The anchor moved by whole months, always from the anchor, never from the previous
-- date: Postgres clamps to the month's last day, so Jan 31 -> Feb 28 (29 in leap years)
-- -> Mar 31 -> Apr 30.
create function dictamesh_billing_add_months(anchor timestamptz, months integer)
returns timestamptz
language sql immutable parallel safe
as $$
    select ((anchor at time zone 'UTC') + make_interval(months => months)) at time zone 'UTC'
$$;

-- k of the monthly period [anchor + k months, anchor + k + 1 months) holding `instant`:
-- the UTC calendar months between them, one less while that month's date is still ahead.
create function dictamesh_billing_period_index(anchor timestamptz, instant timestamptz)
returns integer
language sql immutable parallel safe
as $$
    select guess.months - (dictamesh_billing_add_months(anchor, guess.months) > instant)::integer
    from (
        select (
            (
                extract(year from instant at time zone 'UTC')
                - extract(year from anchor at time zone 'UTC')
            ) * 12
            + extract(month from instant at time zone 'UTC')
            - extract(month from anchor at time zone 'UTC')
        )::integer as months
    ) as guess
$$;

-- Period k of a subscription: the month its usage is billed for, and the period a fee
-- pays for, the same month or, on an annual plan, the term year holding it. Fees and
-- seats are billed on the first day of a fee period (is_fee_date).
create function dictamesh_billing_period(
    anchor timestamptz, billing_cycle text, period_index integer
)
returns table (
    period_start timestamptz,
    period_end timestamptz,
    fee_period_start timestamptz,
    fee_period_end timestamptz,
    is_fee_date boolean
)
language sql immutable parallel safe
as $$
    select
        dictamesh_billing_add_months(anchor, period_index),
        dictamesh_billing_add_months(anchor, period_index + 1),
        dictamesh_billing_add_months(anchor, fee.first_index),
        dictamesh_billing_add_months(anchor, fee.first_index + fee.months),
        period_index = fee.first_index
    from (
        select
            case
                when billing_cycle = 'annual' then 12 * (period_index / 12) else period_index
            end as first_index,
            case when billing_cycle = 'annual' then 12 else 1 end as months
    ) as fee
$$;

-- A period's usage as quantity x seconds, what a quota x seconds is compared with
-- (quotas are prorated by the seconds each plan was active). Summed metrics count over
-- the whole period; averaged ones (storage, stored as GB-hours) count 3,600 seconds per
-- stored hour, so an hour without a row counts as 0 GB in the period's average.
create function dictamesh_billing_usage_seconds(
    total numeric, aggregation text, period_seconds numeric
)
returns numeric
language sql immutable parallel safe
as $$
    select total * case when aggregation = 'average' then 3600 else period_seconds end
$$;

-- What a period's usage is billed as: the total of a summed metric; for an averaged
-- one the average over every hour of the period, rounded once to 6 decimals.
create function dictamesh_billing_billed_usage(
    total numeric, aggregation text, period_seconds numeric
)
returns numeric
language sql immutable parallel safe
as $$
    select
        case
            when aggregation = 'average'
                then round(
                    dictamesh_billing_usage_seconds(total, aggregation, period_seconds)
                    / period_seconds,
                    6
                )
            else total
        end
$$;
