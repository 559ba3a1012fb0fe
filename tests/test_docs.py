"""The data contract documents every table and column the schema has."""

import re
import subprocess
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


# ---- the repository stands alone ---------------------------------------------------------

ROOT = CONTRACT.parent.parent
# generated or fetched, never written by hand
SKIPPED_DIRS = {".git", ".venv", ".billing", "target", "dbt_packages", "__pycache__"}
MARKDOWN_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
PARENT_PATH = re.compile(r"(?:\.\./)+[\w./-]*[\w-]")
CITED_DOCUMENT = re.compile(r"[\w./-]*\b[\w-]+\.md\b")
NUMBERED_RULE = re.compile(r"\b(?:precise )?rules? \d", re.IGNORECASE)
# the planning documents the rate card and the scenario format were first written in
OUTSIDE_DOCUMENTS = re.compile(r"\b(?:RATE_CARD|SCENARIO_FORMAT)\b")


def _repository_text_files() -> list[Path]:
    """Every file a clone holds (or will hold once committed), except binaries."""
    try:
        listed = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.splitlines()
        paths = [ROOT / name for name in listed]
    except (OSError, subprocess.CalledProcessError):  # an export without git
        paths = [
            p
            for p in ROOT.rglob("*")
            if not SKIPPED_DIRS & set(p.relative_to(ROOT).parts) and ".egg-info" not in str(p)
        ]
    texts = []
    for path in paths:
        if not path.is_file():
            continue
        try:
            path.read_text()
        except UnicodeDecodeError:
            continue
        texts.append(path)
    return texts


def _inside(path: Path) -> bool:
    return path.resolve().is_relative_to(ROOT)


def _leaks(path: Path, documents: set[str]) -> list[str]:
    """Each reference in `path` that a clone of only this repository cannot follow;
    `documents` are the names of the repository's markdown files."""
    text = path.read_text()
    here = path.parent
    found = []
    for target in MARKDOWN_LINK.findall(text):
        if re.match(r"^(?:[a-z]+:|#)", target):
            continue  # a URL or an anchor in the same page
        local = here / target.split("#")[0]
        if not (_inside(local) and local.exists()):
            found.append(f"link {target}")
    for target in PARENT_PATH.findall(text):
        if not (_inside(here / target) and (here / target).exists()):
            found.append(f"path {target}")
    for cited in CITED_DOCUMENT.findall(text):
        if not any((base / cited).exists() for base in (here, ROOT)) and (
            Path(cited).name not in documents
        ):
            found.append(f"document {cited}")
    found += [f"document {m}" for m in OUTSIDE_DOCUMENTS.findall(text)]
    found += [f"numbered rule {m!r}" for m in NUMBERED_RULE.findall(text)]
    if "/work/" in text:
        found.append("absolute path /work/")
    return found


def test_every_link_and_path_stays_inside_the_repository() -> None:
    """Someone who clones only this repository can follow every link and cited file, and
    rules are cited by their name in docs/rate-card.md, not by a number."""
    this = Path(__file__).resolve()
    files = _repository_text_files()
    documents = {p.name for p in files if p.suffix == ".md"}
    leaks = {
        str(path.relative_to(ROOT)): found
        for path in files
        if path.resolve() != this and (found := _leaks(path, documents))
    }
    assert not leaks, leaks


def test_the_rate_card_names_every_rule_it_lists() -> None:
    """Rules are cited by name, so each has its own heading (and anchor) in the rate card."""
    card = (ROOT / "docs" / "rate-card.md").read_text()
    rules = re.findall(r"^### (.+)$", card, re.MULTILINE)
    assert len(rules) == len(set(rules)) >= 12
    assert not [r for r in rules if re.search(r"\d", r)]


# ---- dependencies say what is used ---------------------------------------------------------

# Used by name rather than by an import: what `billing dev` starts, what dagster.yaml,
# profiles.yml and the SQLAlchemy URLs name.
USED_WITHOUT_IMPORT = {
    "dagster-webserver": "`dagster dev` (billing dev) serves the UI with it",
    "dagster-postgres": "dagster_home/dagster.yaml keeps the instance in Postgres",
    "dbt-postgres": "the adapter dbt_project/profiles.yml names",
    "psycopg": "the driver of the `postgresql+psycopg` URLs",
    "openpyxl": "pandas' Excel writer for `billing export ... -o FILE.xlsx`",
    "pyarrow": "pandas' Parquet writer for `billing export ... -o FILE.parquet`",
}


def test_every_runtime_dependency_is_imported_by_the_package() -> None:
    """A dependency nothing imports waits in an optional extra until its feature lands."""
    import importlib.metadata
    import tomllib

    from packaging.requirements import Requirement

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    modules_of: dict[str, set[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            modules_of.setdefault(dist.lower().replace("_", "-"), set()).add(module)
    code = "\n".join(p.read_text() for p in (ROOT / "dagster_billing").rglob("*.py"))
    imported = set(re.findall(r"^\s*(?:from|import)\s+(\w+)", code, re.MULTILINE))
    unused = [
        name
        for name in (Requirement(d).name.lower() for d in project["dependencies"])
        if name not in USED_WITHOUT_IMPORT and not modules_of.get(name, set()) & imported
    ]
    assert not unused, f"imported by nothing, move to an extra: {unused}"
