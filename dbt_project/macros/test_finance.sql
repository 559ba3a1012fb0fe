{#- Month-end MRR rolls forward: for every organization and month, the month before's
    MRR plus the month's movements is this month's MRR, in the invoice currency and in
    USD, and previous_mrr is last month's row (0 when there is none). Fails with the
    organization-months that do not add up. -#}
{% test mrr_rolls_forward(model, movements_model) %}

with moved as (
    select
        organization_id,
        month,
        sum(amount) as amount,
        sum(amount_usd) as amount_usd
    from {{ movements_model }}
    group by organization_id, month
),

checked as (
    select
        snapshot.organization_id,
        snapshot.month,
        snapshot.mrr,
        snapshot.previous_mrr,
        coalesce(before.mrr, 0) as last_month_mrr,
        coalesce(before.mrr_usd, 0) as last_month_mrr_usd,
        snapshot.mrr_usd,
        coalesce(moved.amount, 0) as moved,
        coalesce(moved.amount_usd, 0) as moved_usd
    from {{ model }} as snapshot
    left join {{ model }} as before
        on
            snapshot.organization_id = before.organization_id
            and before.month = (snapshot.month - interval '1 month')::date
    left join moved
        on snapshot.organization_id = moved.organization_id and snapshot.month = moved.month
)

select *
from checked
where
    previous_mrr <> last_month_mrr
    or last_month_mrr + moved <> mrr
    or last_month_mrr_usd + moved_usd <> mrr_usd

{% endtest %}

{#- Every issued line is fully accounted for at every month end from its issue on:
    recognized to date + deferred = issued (0 once void), per invoice and currency, to the
    minor unit; and nothing recognizes more than its line. -#}
{% test recognized_plus_deferred_is_issued(model) %}

with per_invoice as (
    select
        invoice_id,
        currency,
        month,
        sum(recognized_to_date) as recognized_to_date,
        sum(deferred_balance) as deferred_balance,
        sum(issued_amount) as issued_amount
    from {{ model }}
    where is_issued
    group by invoice_id, currency, month
)

select *
from per_invoice
where recognized_to_date + deferred_balance <> issued_amount

union all

select
    invoice_id,
    currency,
    month,
    recognized_to_date,
    deferred_balance,
    issued_amount
from {{ model }}
where abs(recognized_to_date) > abs(line_amount)

{% endtest %}
