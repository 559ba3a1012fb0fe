"""Invoicing assets: a billing day's drafts become numbered invoices, PDFs, overdue flags.

All three are daily-partitioned on the UTC billing day and safe to re-run: finalization
skips invoices that exist, PDFs are stored once, overdue is flagged once.
"""

from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import dagster as dg
from pydantic import Field

from dagster_billing.invoicing.checks import (
    invoices_without_pdf,
    needed_usage_hours,
    numbering_problems,
    totals_problems,
)
from dagster_billing.invoicing.finalize import finalize_window
from dagster_billing.invoicing.lifecycle import mark_overdue
from dagster_billing.invoicing.pdf import missing_pdfs, store_pdfs
from dagster_billing.partitions import daily_partitions, hourly_partitions
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


USAGE_HOURLY = dg.AssetKey("usage_hourly")
USAGE_COMPLETE = "usage_complete"


class FinalizeConfig(dg.Config):
    """An operator's waiver: hourly partitions of `usage_hourly` (`2026-10-05-10:00`, or a
    range `2026-10-05-10:00..2026-10-05-13:00`) known to have no usage, billed without."""

    waive_usage_hours: list[str] = Field(default_factory=list)


def _hour_key(hour: datetime) -> str:
    return hourly_partitions.get_partition_key_for_timestamp(hour.timestamp())


def _waived(config: FinalizeConfig) -> set[str]:
    keys: set[str] = set()
    for item in config.waive_usage_hours:
        first, _, last = item.partition("..")
        keys.update(
            hourly_partitions.get_partition_keys_in_range(
                dg.PartitionKeyRange(first.strip(), (last or first).strip())
            )
        )
    return keys


def _ranges(keys: list[str]) -> str:
    """`a..b, c`: consecutive hours folded, so a missing day is one item, not 24."""
    parts: list[list[str]] = []
    for key in keys:
        if parts and hourly_partitions.get_next_partition_key(parts[-1][-1]) == key:
            parts[-1].append(key)
        else:
            parts.append([key])
    return ", ".join(p[0] if len(p) == 1 else f"{p[0]}..{p[-1]}" for p in parts)


def usage_gate(
    instance: dg.DagsterInstance, hours: dict[datetime, bool], config: FinalizeConfig
) -> tuple[list[str], list[str], set[str]]:
    """(missing, failed, waived) partitions of `usage_hourly` among the hours the window
    bills: failed = its latest materialization attempt failed; missing = never (or not
    yet) materialized and no usage for it in the warehouse (imported hours count)."""
    keys = [_hour_key(hour) for hour in hours]
    status = instance.get_status_by_partition(USAGE_HOURLY, keys, hourly_partitions) or {}
    waived = _waived(config)
    failed = [
        key
        for key in keys
        if status.get(key) == dg.AssetPartitionStatus.FAILED and key not in waived
    ]
    missing = [
        key
        for key, ingested in zip(keys, hours.values(), strict=True)
        if not ingested
        and status.get(key)
        not in (dg.AssetPartitionStatus.MATERIALIZED, dg.AssetPartitionStatus.FAILED)
        and key not in waived
    ]
    return missing, failed, waived & set(keys)


def usage_gate_message(day: str, missing: list[str], failed: list[str]) -> str:
    found = [f"{len(missing)} missing ({_ranges(missing)})"] if missing else []
    found += [f"{len(failed)} failed ({_ranges(failed)})"] if failed else []
    every = _ranges(sorted({*missing, *failed}))
    return (
        f"invoices_finalized[{day}]: usage_hourly partitions the invoices bill are "
        f"{' and '.join(found)}; an invoice is final once issued, so it is not finalized "
        "over a hole. Backfill them (Dagster UI: usage_hourly > Materialize, partitions "
        f"{every}), or, if those hours truly had no usage, waive them: run config "
        f'ops: {{invoices_finalized: {{config: {{waive_usage_hours: ["{every}"]}}}}}}'
    )


@dg.asset(
    partitions_def=daily_partitions,
    backfill_policy=SINGLE_RUN,
    group_name="invoicing",
    deps=DRAFT_MARTS,
    kinds={"postgres"},
    check_specs=[
        dg.AssetCheckSpec(
            USAGE_COMPLETE,
            asset="invoices_finalized",
            blocking=True,
            description="every hour of usage the day's invoices bill was ingested "
            "(or waived): finalizing over a hole bills too little, forever",
        )
    ],
)
def invoices_finalized(
    context: dg.AssetExecutionContext,
    config: FinalizeConfig,
    warehouse: WarehouseResource,
    invoicing: InvoicingResource,
) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
    """Copy the day's drafts from `fct_invoices` into numbered, immutable invoices, once
    the usage they bill is complete."""
    window = context.partition_time_window
    with warehouse.engine().connect() as conn:
        hours = needed_usage_hours(conn, window.start, window.end, warehouse.dbt_schema)
    missing, failed, waived = usage_gate(context.instance, hours, config)
    gate = {
        "hours_needed": dg.MetadataValue.int(len(hours)),
        "missing": dg.MetadataValue.text(_ranges(missing)),
        "failed": dg.MetadataValue.text(_ranges(failed)),
        "waived": dg.MetadataValue.text(_ranges(sorted(waived))),
    }
    if missing or failed:
        message = usage_gate_message(context.partition_key_range.start, missing, failed)
        yield dg.AssetCheckResult(
            check_name=USAGE_COMPLETE,
            passed=False,
            severity=dg.AssetCheckSeverity.ERROR,
            description=message,
            metadata=gate,
        )
        raise dg.Failure(description=message)
    with warehouse.engine().begin() as conn:
        result = finalize_window(
            conn,
            window.start,
            window.end,
            prefix=invoicing.number_prefix,
            due_days=invoicing.due_days,
            schema=warehouse.dbt_schema,
        )
    yield dg.MaterializeResult(
        metadata={
            "finalized": len(result.numbers),
            "already_finalized": result.skipped,
            "paid_at_zero": result.zero_paid,
            "credit_applications": result.credit_applications,
            "numbers": dg.MetadataValue.json(
                [result.numbers[0], result.numbers[-1]] if result.numbers else []
            ),
        },
        check_results=[dg.AssetCheckResult(check_name=USAGE_COMPLETE, passed=True, metadata=gate)],
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


def check_result(problems: list[str], what: str) -> dg.AssetCheckResult:
    """A check passes with no problems; the count and the first 20 go in its metadata."""
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
        return check_result(totals_problems(conn), "invoices_not_adding_up")


@dg.asset_check(asset=invoices_finalized, description="numbers unique and gap-free per year")
def invoice_numbers_gap_free(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.engine().connect() as conn:
        return check_result(numbering_problems(conn), "broken_sequences")


@dg.asset_check(asset=invoice_pdfs, description="every finalized invoice has a stored PDF")
def every_invoice_has_a_pdf(warehouse: WarehouseResource) -> dg.AssetCheckResult:
    with warehouse.engine().connect() as conn:
        return check_result(invoices_without_pdf(conn), "invoices_without_pdf")


invoicing_assets = [invoices_finalized, invoice_pdfs, invoices_overdue]
invoicing_checks = [invoice_totals_add_up, invoice_numbers_gap_free, every_invoice_has_a_pdf]
