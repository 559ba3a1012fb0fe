"""Finance on the issued ledger: re-rating with a reviewed diff, mart exports, previews."""

FINANCE_MARTS = (
    "fct_issued_invoice_lines",
    "fct_revenue_by_plan_month",
    "fct_revenue_recognition",
    "fct_deferred_revenue",
    "fct_mrr_movements",
    "fct_mrr",
    "fct_arr",
    "fct_draft_revenue_by_plan_month",
)
