"""The tables finalization writes and the next day's rating reads back, as Dagster assets.

Rating a billing day reads what earlier days finalized: the credit ledger (what is left of
each grant, the balance credits of negative subtotals) and the finalized invoices and
lines (periods already billed are not rated again; corrected usage is compared with what
was billed). So the graph has a loop: `invoices_finalized` -> these tables -> staging ->
`billing_invoice_models` of a later day -> the draft marts -> `invoices_finalized`.
Dagster's asset graph holds no cycle between assets, so each table is its own node
under the key prefix `invoices_finalized` (the dbt sources carry the same keys,
dbt_project/models/staging/_billing__sources.yml) and says in its description who writes
it; the edge back from `invoices_finalized` is that description, not a dependency.
"""

from __future__ import annotations

import dagster as dg

FINALIZATION = "invoices_finalized"

# warehouse table -> (its key under the prefix, what finalization writes there)
FINALIZED_TABLES = {
    "dictamesh_billing_invoices": (
        "invoices",
        "numbered, immutable invoices; rating skips the periods they already billed",
    ),
    "dictamesh_billing_invoice_line_items": (
        "invoice_line_items",
        "their lines; corrected usage is rated against what they billed",
    ),
    "dictamesh_billing_credits": (
        "credit_ledger",
        "the credit applications and balance credits of each finalized invoice (grants"
        " come from operators); the next day's credit walk starts from what is left",
    ),
}


def finalized_table_key(table: str) -> dg.AssetKey:
    """The key the dbt source of `table` carries."""
    return dg.AssetKey([FINALIZATION, FINALIZED_TABLES[table][0]])


finalized_invoice_tables = [
    dg.AssetSpec(
        key=finalized_table_key(table),
        group_name="invoicing",
        description=f"Table `{table}`, written by `{FINALIZATION}`: {what}. Read by the"
        " next billing day's rating (dbt source `billing`), which closes the loop.",
        metadata={"table": table, "written_by": FINALIZATION},
        kinds={"postgres"},
    )
    for table, (_, what) in FINALIZED_TABLES.items()
]
