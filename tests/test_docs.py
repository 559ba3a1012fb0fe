"""The data contract documents every table and column the schema has."""

import re
from pathlib import Path

from dagster_billing.warehouse.schema import metadata

CONTRACT = Path(__file__).resolve().parent.parent / "docs" / "data-contract.md"


def _documented_columns() -> dict[str, set[str]]:
    documented: dict[str, set[str]] = {}
    table = None
    for line in CONTRACT.read_text().splitlines():
        if heading := re.match(r"^### (\w+)$", line):
            table = heading.group(1)
            documented[table] = set()
        elif table and line.startswith("| ") and not line.startswith("| column"):
            documented[table] |= {name.strip() for name in line.split("|")[1].split(",")}
    return documented


def test_every_table_and_column_is_in_the_data_contract() -> None:
    documented = _documented_columns()
    for table in metadata.sorted_tables:
        assert table.name in documented, f"{table.name} missing from docs/data-contract.md"
        missing = {c.name for c in table.columns} - documented[table.name]
        assert not missing, f"{table.name}: undocumented columns {sorted(missing)}"
