"""`billing export`: a finance mart as the spreadsheet the month is closed in.

Amounts stay exact where the format allows: CSV writes the decimals as Postgres returns
them, Parquet stores them as decimal128, and Excel (whose numbers are binary floats)
gets numbers a spreadsheet can sum. Timestamps are UTC; Excel gets them without a zone,
which it cannot store.
"""

from __future__ import annotations

from datetime import date
from pathlib import Path

import pandas as pd
import sqlalchemy as sa
from sqlalchemy.engine import Connection

from dagster_billing.finance import FINANCE_MARTS

# the column --month filters on (a date: the first of the month, or an instant)
MONTH_COLUMNS = {mart: "month" for mart in FINANCE_MARTS} | {
    "fct_issued_invoice_lines": "issued_at",
    "fct_mrr_movements": "effective_at",
}
FORMATS = (".csv", ".xlsx", ".parquet")


class ExportError(ValueError):
    """Bad input, phrased as `field: what is wrong`."""


def parse_month(value: str | None) -> date | None:
    if value is None:
        return None
    try:
        year, month = value.split("-")
        return date(int(year), int(month), 1)
    except ValueError:
        raise ExportError(f"--month: expected YYYY-MM, got {value!r}") from None


def check_request(mart: str, out: Path) -> None:
    if mart not in MONTH_COLUMNS:
        raise ExportError(f"MART: unknown mart {mart!r}; one of {', '.join(FINANCE_MARTS)}")
    if out.suffix.lower() not in FORMATS:
        raise ExportError(f"-o: the file must end in {', '.join(FORMATS)}, got {out.name!r}")


def read_mart(
    conn: Connection, mart: str, month: date | None = None, schema: str = "analytics"
) -> pd.DataFrame:
    """The mart's rows (one month's when given), in its column order."""
    column = MONTH_COLUMNS[mart]
    where, params = "", {}
    if month is not None:
        where = (
            f" where date_trunc('month', {column}, 'UTC')::date = :month"
            if column != "month"
            else " where month = :month"
        )
        params = {"month": month}
    result = conn.execute(
        sa.text(f'select * from "{schema}"."{mart}"{where} order by 1, 2'), params
    )
    return pd.DataFrame(result.fetchall(), columns=list(result.keys()))


def write(frame: pd.DataFrame, out: Path) -> None:
    suffix = out.suffix.lower()
    if suffix == ".csv":
        frame.to_csv(out, index=False)
    elif suffix == ".parquet":
        frame.to_parquet(out, index=False)
    else:
        sheet = frame.copy()
        for name in sheet.columns:
            values = sheet[name].dropna()
            if len(values) and hasattr(values.iloc[0], "quantize"):
                sheet[name] = pd.to_numeric(sheet[name])
            elif isinstance(sheet[name].dtype, pd.DatetimeTZDtype):
                sheet[name] = sheet[name].dt.tz_convert("UTC").dt.tz_localize(None)
        sheet.to_excel(out, index=False, sheet_name="export")


def export_mart(
    conn: Connection, mart: str, out: Path, month: date | None = None, schema: str = "analytics"
) -> int:
    """Write the mart to `out` (format from its extension); returns the rows written."""
    check_request(mart, out)
    frame = read_mart(conn, mart, month, schema)
    write(frame, out)
    return len(frame)
