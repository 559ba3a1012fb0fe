-- Credits after tax (docs/rate-card.md: credits; negative subtotal, credit order).
-- Each organization's invoices
-- are walked in (billing date, subscription) order with its pool of credits: the
-- ledger's remaining grants in the invoice currency, plus the balance credits that
-- negative subtotals earlier in the walk created (no expiry, used last). An invoice
-- uses the credits still valid at its billing date, soonest-expiring first, ties by
-- grant order, never more than its total (a balance credit names the invoice whose
-- negative subtotal created it: finalization spends exactly the credits decided here).
-- Periods already finalized are skipped:
-- their credits are in the ledger. With credits_enabled off nothing is applied.
with totals as (
    select * from {{ ref('int_invoice_totals') }}
),

ledger as (
    select * from {{ ref('stg_billing__credits') }}
),

finalized as (
    select * from {{ ref('stg_billing__invoices') }}
    where invoice_status <> 'draft'
),

ordered as (
    select
        totals.organization_id,
        totals.invoice_key,
        totals.billing_date,
        totals.minor_units,
        case when {{ var('credits_enabled') }} then totals.total else 0 end as total,
        totals.balance_credit,
        row_number() over (
            partition by totals.organization_id
            order by totals.billing_date, totals.subscription_external_id
        ) as step
    from totals
    left join finalized
        on
            totals.subscription_id = finalized.subscription_id
            and totals.billing_date = finalized.period_start
    where finalized.invoice_id is null
),

grants as (
    select
        ledger.grant_id,
        ledger.organization_id,
        max(ledger.expires_at) filter (where ledger.entry_type = 'grant') as expires_at,
        sum(ledger.amount) as remaining
    from ledger
    inner join {{ ref('stg_billing__organizations') }} as organizations
        on
            ledger.organization_id = organizations.organization_id
            and ledger.currency = organizations.currency
    group by ledger.grant_id, ledger.organization_id
),

pools as (
    select
        organizations.organization_id,
        coalesce(
            jsonb_agg(
                jsonb_build_object(
                    'credit_id', grants.grant_id,
                    'balance_of', null,
                    'expires_at', grants.expires_at,
                    'remaining', grants.remaining,
                    'rank', grants.grant_id
                )
            ) filter (where grants.remaining > 0),
            '[]'::jsonb
        ) as pool
    from (select distinct organization_id from ordered) as organizations
    left join grants on organizations.organization_id = grants.organization_id
    group by organizations.organization_id
),

walked as (
    with recursive walk as (
        select
            organization_id,
            0::bigint as step,
            null::text as invoice_key,
            pool,
            '[]'::jsonb as applications
        from pools
        union all
        select
            walk.organization_id,
            ordered.step,
            ordered.invoice_key,
            allocation.pool
            || case
                when ordered.balance_credit > 0
                    then jsonb_build_array(jsonb_build_object(
                        'credit_id', null,
                        'balance_of', ordered.invoice_key,
                        'expires_at', null,
                        'remaining', ordered.balance_credit,
                        'rank', 1e15 + ordered.step
                    ))
                else '[]'::jsonb
            end as pool,
            allocation.applications
        from walk
        inner join ordered
            on walk.organization_id = ordered.organization_id and ordered.step = walk.step + 1
        cross join lateral (
            -- the lateral reads the outer row (ordered.*): qualification rules misfire
            -- noqa: disable=RF03
            with credits as (
                select
                    (entry ->> 'credit_id')::bigint as credit_id,
                    entry ->> 'balance_of' as balance_of,
                    (entry ->> 'expires_at')::timestamptz as expires_at,
                    round((entry ->> 'remaining')::numeric, ordered.minor_units) as remaining,
                    (entry ->> 'rank')::numeric as credit_rank
                from jsonb_array_elements(walk.pool) as entry
            ),

            usable as (
                select
                    *,
                    expires_at is null
                    or expires_at > ordered.billing_date as is_usable
                from credits
            ),

            consumed as (
                select
                    *,
                    case
                        when is_usable
                            then greatest(0, least(
                                remaining,
                                ordered.total - coalesce(sum(remaining) filter (
                                    where is_usable
                                ) over (
                                    order by expires_at nulls last, credit_rank
                                    rows between unbounded preceding and 1 preceding
                                ), 0)
                            ))
                        else 0
                    end as used
                from usable
            )

            select
                coalesce(
                    jsonb_agg(
                        jsonb_build_object(
                            'credit_id', credit_id,
                            'balance_of', balance_of,
                            'expires_at', expires_at,
                            'remaining', remaining - used,
                            'rank', credit_rank
                        )
                    ) filter (where remaining - used > 0),
                    '[]'::jsonb
                ) as pool,
                coalesce(
                    jsonb_agg(
                        jsonb_build_object(
                            'credit_id', credit_id, 'balance_of', balance_of, 'amount', used
                        )
                        order by expires_at nulls last, credit_rank
                    ) filter (where used > 0),
                    '[]'::jsonb
                ) as applications
            from consumed
            -- noqa: enable=RF03
        ) as allocation
    )

    select * from walk
    where step > 0
),

final as (
    select
        walked.invoice_key,
        applied.ordinality::integer as application_number,
        (applied.application ->> 'credit_id')::bigint as credit_id,
        applied.application ->> 'balance_of' as balance_invoice_key,
        (applied.application ->> 'amount')::numeric(20, 6) as amount
    from walked
    cross join
        lateral jsonb_array_elements(walked.applications)
        with ordinality as applied (application, ordinality)
)

select * from final
