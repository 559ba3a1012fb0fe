"""Invoicing assets: a billing day's drafts become numbered invoices, PDFs, overdue flags.

All three are daily-partitioned on the UTC billing day and safe to re-run: finalization
skips invoices that exist, PDFs are stored once, overdue is flagged once.
"""

from pathlib import Path

import dagster as dg

from dagster_billing.invoicing.checks import (
    invoices_without_pdf,
    numbering_problems,
    totals_problems,
)
from dagster_billing.invoicing.finalize import finalize_window
from dagster_billing.invoicing.lifecycle import mark_overdue
from dagster_billing.invoicing.pdf import missing_pdfs, store_pdfs
from dagster_billing.partitions import daily_partitions
from dagster_billing.resources import InvoicingResource, WarehouseResource

# A backfill of many days is one run over their whole window (one finalizing transaction,
# numbers in billing-date order), like the dbt billing models it reads.
SINGLE_RUN = dg.BackfillPolicy.single_run()

# The rating marts (dbt, same daily partitions) that hold the drafts: docs/invoice-marts.md.
DRAFT_MARTS = [
    dg.AssetKey("fct_invoices"),
    dg.AssetKey("fct_invoice_line_items"),
    dg.AssetKey("fct_invoice_credit_applications"),
]


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    group_name="invoicing",
    deps=DRAFT_MARTS,
    kinds={"postgres"},
)
def invoices_finalized(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, invoicing: InvoicingResource
) -> dg.MaterializeResult:
    """Copy the day's drafts from `fct_invoices` into numbered, immutable invoices."""
    window = context.partition_time_window
    with warehouse.engine().begin() as conn:
        result = finalize_window(
            conn,
            window.start,
            window.end,
            prefix=invoicing.number_prefix,
            due_days=invoicing.due_days,
            schema=warehouse.dbt_schema,
        )
    return dg.MaterializeResult(
        metadata={
            "finalized": len(result.numbers),
            "already_finalized": result.skipped,
            "paid_at_zero": result.zero_paid,
            "credit_applications": result.credit_applications,
            "numbers": dg.MetadataValue.json(
                [result.numbers[0], result.numbers[-1]] if result.numbers else []
            ),
        }
    )


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    group_name="invoicing",
    deps=[invoices_finalized],
    kinds={"pdf"},
)
def invoice_pdfs(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource, invoicing: InvoicingResource
) -> dg.MaterializeResult:
    """Render and store the PDF of each invoice issued that day that has none yet."""
    window = context.partition_time_window
    with warehouse.engine().begin() as conn:
        stored = store_pdfs(
            conn,
            missing_pdfs(conn, window.start, window.end),
            seller=invoicing.seller,
            data_dir=Path(invoicing.data_dir),
            template_dir=invoicing.templates,
            workers=invoicing.pdf_workers,
        )
    return dg.MaterializeResult(metadata={"rendered": len(stored)})


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    group_name="invoicing",
    deps=[invoices_finalized],
    kinds={"postgres"},
)
def invoices_overdue(
    context: dg.AssetExecutionContext, warehouse: WarehouseResource
) -> dg.MaterializeResult:
    """Flag open invoices past due at the end of the day; `billing.invoice.overdue` once each."""
    with warehouse.engine().begin() as conn:
        numbers = mark_overdue(conn, context.partition_time_window.end)
    return dg.MaterializeResult(
        metadata={"newly_overdue": len(numbers), "numbers": dg.MetadataValue.json(numbers[:50])}
    )


def _result(problems: list[str], what: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=not problems,
        metadata={what: len(problems), "first": dg.MetadataValue.json(problems[:20])},
    )


@dg.asset_check(
    asset=invoices_finalized,
    description="total = sum(lines) - discount + tax; "
    "amount_due = total - credits_applied >= 0; credits match the ledger",
)
def invoice_totals_add_up(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.engine().connect() as conn:
        return _result(totals_problems(conn), "invoices_not_adding_up")


@dg.asset_check(asset=invoices_finalized, description="numbers unique and gap-free per year")
def invoice_numbers_gap_free(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.engine().connect() as conn:
        return _result(numbering_problems(conn), "broken_sequences")


@dg.asset_check(asset=invoice_pdfs, description="every finalized invoice has a stored PDF")
def every_invoice_has_a_pdf(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.engine().connect() as conn:
        return _result(invoices_without_pdf(conn), "invoices_without_pdf")


invoicing_assets = [invoices_finalized, invoice_pdfs, invoices_overdue]
invoicing_checks = [invoice_totals_add_up, invoice_numbers_gap_free, every_invoice_has_a_pdf]
