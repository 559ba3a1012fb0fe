"""The finance pieces are in the one Definitions: the marts run daily after invoicing,
and the re-rating review is a job of its own."""

import dagster as dg

from dagster_billing.definitions import defs


def test_finance_marts_run_daily_after_invoicing_and_rerate_review_is_a_job() -> None:
    schedule = defs.get_schedule_def("finance_marts_schedule")
    invoicing = defs.get_schedule_def("invoicing_daily_schedule")
    assert schedule.cron_schedule == "45 4 * * *"
    assert invoicing.cron_schedule == "30 3 * * *"  # finalizes the day first
    graph = defs.resolve_asset_graph()
    ledger = graph.get(dg.AssetKey("fct_issued_invoice_lines"))
    assert dg.AssetKey("invoices_finalized") in ledger.parent_keys
    review = defs.get_job_def("rerate_review")
    assert [node.name for node in review.graph.node_defs] == ["rerate_diff"]
