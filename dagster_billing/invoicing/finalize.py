"""Finalize drafts: copy them into the warehouse, numbered, with credits and events.

One transaction per call. A transaction-scoped advisory lock serializes finalizers, and
the unique `(subscription_id, period_start)` key is checked under it, so re-running a day
or racing two runs never yields a second invoice or burns a number. Numbers come from
`dictamesh_billing_invoice_number_counters`, advanced in the same transaction: gap-free.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.engine import Connection

from dagster_billing.events import catalog
from dagster_billing.events.outbox import write_events
from dagster_billing.invoicing import InvoicingError
from dagster_billing.invoicing.marts import DEFAULT_SCHEMA, DraftCredit, DraftInvoice, load_drafts
from dagster_billing.warehouse.schema import (
    credits,
    invoice_line_items,
    invoice_number_counters,
    invoices,
    usage_adjustments,
)

FINALIZE_LOCK = "dictamesh_billing_invoices.finalize"
_INVOICE_COPY_COLUMNS = [
    "invoice_key",
    "organization_id",
    "subscription_id",
    "period_start",
    "period_end",
    "currency",
    "subtotal",
    "discount",
    "tax_rate",
    "tax",
    "total",
    "credits_applied",
    "amount_due",
]
_LINE_COPY_COLUMNS = [
    "invoice_id",
    "line_number",
    "kind",
    "description",
    "metric",
    "quantity",
    "unit_amount",
    "amount",
    "period_start",
    "period_end",
    "tier_detail",
    "adjusts_invoice_id",
]
# draft -> open (or paid at $0) for the whole batch in one statement and one parameter.
_OPEN_INVOICES = sa.text(
    """
    update dictamesh_billing_invoices i
    set number = v.number, status = v.status, issued_at = v.issued_at, due_at = v.due_at,
        paid_at = v.paid_at, updated_at = now()
    from jsonb_to_recordset(cast(:rows as jsonb)) as v(
        id bigint, number text, status text, issued_at timestamptz, due_at timestamptz,
        paid_at timestamptz)
    where i.id = v.id
    """
)
_GRANT = credits.alias("g")


@dataclass(frozen=True)
class FinalizeResult:
    numbers: list[str] = field(default_factory=list)
    skipped: int = 0
    zero_paid: int = 0
    credit_applications: int = 0


def _iso(value: object) -> str:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serializable: {value!r}")


def copy_rows(conn: Connection, table: sa.Table, columns: list[str], rows: list[tuple]) -> None:
    """COPY rows into `table` inside the caller's transaction: one round trip for
    thousands of rows (row triggers still fire), where INSERTs would take one each."""
    cursor = conn.connection.driver_connection.cursor()
    with cursor.copy(f"copy {table.name} ({', '.join(columns)}) from stdin") as copy:
        for row in rows:
            copy.write_row(row)


def format_number(prefix: str, year: int, sequence: int) -> str:
    """`INV-2026-000042`: prefix, issue year, six-digit sequence within the year."""
    return f"{prefix}{year}-{sequence:06d}"


def _allocate_numbers(conn: Connection, prefix: str, years: Counter[int]) -> dict[int, list[int]]:
    """Reserve consecutive sequence numbers per year; the row lock holds until commit."""
    allocated = {}
    for year, count in sorted(years.items()):
        stmt = insert(invoice_number_counters).values(prefix=prefix, year=year, last_value=count)
        last = conn.execute(
            stmt.on_conflict_do_update(
                index_elements=["prefix", "year"],
                set_={
                    "last_value": invoice_number_counters.c.last_value + count,
                    "updated_at": sa.func.now(),
                },
            ).returning(invoice_number_counters.c.last_value)
        ).scalar_one()
        allocated[year] = list(range(last - count + 1, last + 1))
    return allocated


def _existing(conn: Connection, drafts: list[DraftInvoice]) -> set[tuple[int, datetime]]:
    pairs = [(d.subscription_id, d.period_start) for d in drafts]
    found = conn.execute(
        sa.select(invoices.c.subscription_id, invoices.c.period_start).where(
            sa.tuple_(invoices.c.subscription_id, invoices.c.period_start).in_(pairs)
        )
    )
    return {(row.subscription_id, row.period_start) for row in found}


def _resolve_adjusted(conn: Connection, drafts: list[DraftInvoice]) -> dict[str, int]:
    keys = {
        line.adjusts_invoice_key
        for draft in drafts
        for line in draft.lines
        if line.adjusts_invoice_key is not None
    }
    if not keys:
        return {}
    rows = conn.execute(
        sa.select(invoices.c.invoice_key, invoices.c.id).where(
            invoices.c.invoice_key.in_(sorted(keys)), invoices.c.status != "draft"
        )
    )
    resolved = {row.invoice_key: row.id for row in rows}
    for draft in drafts:
        for line in draft.lines:
            if line.adjusts_invoice_key is not None and line.adjusts_invoice_key not in resolved:
                raise InvoicingError(
                    f"fct_invoice_line_items[{draft.invoice_key}#{line.line_number}]"
                    f".adjusts_invoice_key: no finalized invoice {line.adjusts_invoice_key!r}"
                )
    return resolved


def _consume_adjustments(
    conn: Connection, drafts: list[DraftInvoice], adjusted: dict[str, int]
) -> None:
    """Late usage an adjustment line now bills is no longer pending: stamp it consumed.

    A line corrects one (invoice, metric); every pending adjustment of that pair is the
    change it carries (the line bills the difference between the invoice rated now and
    what was billed, so it covers all of them at once).
    """
    pairs = {
        (adjusted[line.adjusts_invoice_key], line.metric)
        for draft in drafts
        for line in draft.lines
        if line.adjusts_invoice_key is not None and line.metric is not None
    }
    if pairs:
        conn.execute(
            sa.update(usage_adjustments)
            .where(
                sa.tuple_(usage_adjustments.c.invoice_id, usage_adjustments.c.metric).in_(
                    sorted(pairs)
                ),
                usage_adjustments.c.consumed_at.is_(None),
            )
            .values(consumed_at=sa.func.now())
        )


class _Ledger:
    """The grants dbt's applications name, read under row locks with their balances.

    Which credits an invoice uses, and in what order, is decided once, in dbt
    (`int_invoice_credit_applications`); this only resolves each application to its grant
    row and refuses one the ledger cannot cover (the ledger changed since the rating run).
    """

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.grants: dict[int, dict[str, Any]] = {}
        self.by_key: dict[str, int] = {}

    def load(self, drafts: list[DraftInvoice]) -> None:
        ids = {c.credit_id for d in drafts for c in d.credits if c.credit_id is not None}
        balances = {
            f"balance:{c.balance_invoice_key}"
            for d in drafts
            for c in d.credits
            if c.credit_id is None and c.balance_invoice_key is not None
        }
        if not ids and not balances:
            return
        grant = _GRANT
        balance = (
            sa.select(sa.func.coalesce(sa.func.sum(credits.c.amount), 0))
            .where(sa.or_(credits.c.id == grant.c.id, credits.c.grant_id == grant.c.id))
            .scalar_subquery()
        )
        rows = self.conn.execute(
            sa.select(grant, balance.label("balance"))
            .where(
                grant.c.entry_type == "grant",
                sa.or_(grant.c.id.in_(sorted(ids)), grant.c.idempotency_key.in_(sorted(balances))),
            )
            .order_by(grant.c.id)
            .with_for_update(of=grant)
        ).mappings()
        for row in rows:
            self.grants[row["id"]] = dict(row)
        self.by_key = {g["idempotency_key"]: gid for gid, g in self.grants.items()}

    def spend(self, draft: DraftInvoice, invoice_id: int, credit: DraftCredit) -> dict[str, Any]:
        """The ledger row applying `credit` to the invoice."""
        where = f"fct_invoice_credit_applications[{draft.invoice_key}]"
        if credit.credit_id is not None:
            grant_id: int | None = credit.credit_id
            if grant_id not in self.grants:
                raise InvoicingError(f"{where}.credit_id: no credit grant {grant_id}")
        elif credit.balance_invoice_key is None:
            raise InvoicingError(
                f"{where}.balance_invoice_key: a balance credit must name its invoice"
            )
        else:
            grant_id = self.by_key.get(f"balance:{credit.balance_invoice_key}")
            if grant_id is None:
                raise InvoicingError(
                    f"{where}.balance_invoice_key: no balance credit from "
                    f"{credit.balance_invoice_key!r}"
                )
        grant = self.grants[grant_id]
        if grant["organization_id"] != draft.organization_id or (
            grant["currency"].strip() != draft.currency
        ):
            raise InvoicingError(
                f"{where}.credit_id: grant {grant_id} belongs to another organization or currency"
            )
        if credit.amount > grant["balance"]:
            raise InvoicingError(
                f"{where}.amount: {credit.amount} exceeds the remaining credit balance by "
                f"{credit.amount - grant['balance']}"
            )
        grant["balance"] -= credit.amount
        return {
            "organization_id": draft.organization_id,
            "entry_type": "application",
            "credit_type": grant["credit_type"],
            "grant_id": grant_id,
            "invoice_id": invoice_id,
            "amount": -credit.amount,
            "currency": draft.currency,
            "description": grant["description"],
        }


def _merge_applications(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One application row per (grant, invoice): the ledger's unique key."""
    merged: dict[tuple[int, int], dict[str, Any]] = {}
    for row in rows:
        key = (row["grant_id"], row["invoice_id"])
        if key in merged:
            merged[key]["amount"] += row["amount"]
        else:
            merged[key] = dict(row)
    return list(merged.values())


def finalize_drafts(
    conn: Connection, drafts: list[DraftInvoice], *, prefix: str, due_days: int
) -> FinalizeResult:
    """Write every draft not yet finalized as an open (or, at $0 due, paid) invoice.

    Runs in the caller's transaction; commit it to publish the invoices and their events.
    """
    conn.execute(sa.text("select pg_advisory_xact_lock(hashtext(:k))"), {"k": FINALIZE_LOCK})
    if not drafts:
        return FinalizeResult()
    existing = _existing(conn, drafts)
    new = [d for d in drafts if (d.subscription_id, d.period_start) not in existing]
    new.sort(key=lambda d: (d.billing_date, d.invoice_key))
    for draft in new:
        draft.validate()
    if not new:
        return FinalizeResult(skipped=len(drafts))

    copy_rows(
        conn,
        invoices,
        [*_INVOICE_COPY_COLUMNS, "status"],
        [(*(getattr(d, c) for c in _INVOICE_COPY_COLUMNS), "draft") for d in new],
    )
    keys = sa.bindparam("keys", type_=ARRAY(sa.Text))
    id_by_key = {
        row.invoice_key: row.id
        for row in conn.execute(
            sa.select(invoices.c.invoice_key, invoices.c.id).where(
                invoices.c.invoice_key == sa.func.any(keys)
            ),
            {"keys": [d.invoice_key for d in new]},
        )
    }
    ids = [id_by_key[d.invoice_key] for d in new]
    adjusted = _resolve_adjusted(conn, new)
    line_rows = [
        (
            invoice_id,
            line.line_number,
            line.kind,
            line.description,
            line.metric,
            line.quantity,
            line.unit_amount,
            line.amount,
            line.period_start,
            line.period_end,
            line.tier_detail,
            adjusted.get(line.adjusts_invoice_key or ""),
        )
        for invoice_id, draft in zip(ids, new, strict=True)
        for line in draft.lines
    ]
    copy_rows(conn, invoice_line_items, _LINE_COPY_COLUMNS, line_rows)
    _consume_adjustments(conn, new, adjusted)

    years = Counter(d.billing_date.year for d in new)
    sequences = _allocate_numbers(conn, prefix, years)
    numbered = {}
    updates, events = [], []
    zero_paid = 0
    for invoice_id, draft in zip(ids, new, strict=True):
        number = format_number(
            prefix, draft.billing_date.year, sequences[draft.billing_date.year].pop(0)
        )
        numbered[invoice_id] = number
        issued = draft.billing_date
        paid = draft.amount_due == 0
        zero_paid += paid
        updates.append(
            {
                "id": invoice_id,
                "number": number,
                "status": "paid" if paid else "open",
                "issued_at": issued,
                "due_at": issued + timedelta(days=due_days),
                "paid_at": issued if paid else None,
            }
        )
        payload = {
            "invoice_id": invoice_id,
            "number": number,
            "invoice_key": draft.invoice_key,
            "organization_id": draft.organization_id,
            "organization_external_id": draft.organization_external_id,
            "subscription_external_id": draft.subscription_external_id,
            "period_start": draft.period_start.isoformat(),
            "period_end": draft.period_end.isoformat(),
            "currency": draft.currency,
            "total": str(draft.total),
            "credits_applied": str(draft.credits_applied),
            "amount_due": str(draft.amount_due),
            "issued_at": issued.isoformat(),
            "due_at": (issued + timedelta(days=due_days)).isoformat(),
            "status": "paid" if paid else "open",
        }
        events.append(catalog.invoice_created(payload, issued))
        if paid:
            events.append(
                catalog.invoice_paid(
                    invoice_id=invoice_id,
                    number=number,
                    organization_id=draft.organization_id,
                    currency=draft.currency,
                    total=draft.total,
                    paid_at=issued,
                )
            )
    conn.execute(_OPEN_INVOICES, {"rows": json.dumps(updates, default=_iso)})

    applications = _apply_credits(conn, new, ids, numbered)
    for row in applications:
        events.append(
            catalog.credit_applied(
                credit_id=row["grant_id"],
                ledger_entry_id=row["id"],
                invoice_id=row["invoice_id"],
                invoice_number=numbered[row["invoice_id"]],
                organization_id=row["organization_id"],
                amount=-row["amount"],
                currency=row["currency"],
                applied_at=row["issued_at"],
            )
        )
    write_events(conn, events)
    return FinalizeResult(
        numbers=list(numbered.values()),
        skipped=len(drafts) - len(new),
        zero_paid=zero_paid,
        credit_applications=len(applications),
    )


def _apply_credits(
    conn: Connection, drafts: list[DraftInvoice], ids: list[int], numbered: dict[int, str]
) -> list[dict[str, Any]]:
    """Balance grants first (a later draft may draw on them), then dbt's applications."""
    grants = [
        {
            "organization_id": d.organization_id,
            "entry_type": "grant",
            "credit_type": "balance",
            "invoice_id": invoice_id,
            "amount": d.balance_credit,
            "currency": d.currency,
            "description": f"Balance carried from invoice {numbered[invoice_id]}",
            "idempotency_key": f"balance:{d.invoice_key}",
        }
        for invoice_id, d in zip(ids, drafts, strict=True)
        if d.balance_credit > 0
    ]
    if grants:
        conn.execute(sa.insert(credits), grants)
    ledger = _Ledger(conn)
    ledger.load(drafts)
    rows: list[dict[str, Any]] = []
    issued: dict[int, datetime] = {}
    for invoice_id, draft in zip(ids, drafts, strict=True):
        issued[invoice_id] = draft.billing_date
        rows.extend(ledger.spend(draft, invoice_id, credit) for credit in draft.credits)
    rows = _merge_applications(rows)
    if not rows:
        return []
    inserted = conn.execute(
        sa.insert(credits).returning(credits.c.id, sort_by_parameter_order=True), rows
    )
    for row, entry in zip(rows, inserted, strict=True):
        row["id"] = entry.id
        row["issued_at"] = issued[row["invoice_id"]]
    return rows


def finalize_window(
    conn: Connection,
    start: datetime,
    end: datetime,
    *,
    prefix: str,
    due_days: int,
    schema: str = DEFAULT_SCHEMA,
) -> FinalizeResult:
    """Finalize the drafts whose billing date is in [start, end) (one billing day)."""
    return finalize_drafts(
        conn, load_drafts(conn, start, end, schema), prefix=prefix, due_days=due_days
    )
