"""`.env.example` documents every setting, and its values are valid."""

import re
from pathlib import Path

import pytest

from dagster_billing.settings import Settings, load_settings

EXAMPLE = Path(__file__).resolve().parent.parent / ".env.example"


def test_every_setting_is_documented() -> None:
    mentioned = set(re.findall(r"^#? ?([A-Z][A-Z0-9_]+)=", EXAMPLE.read_text(), re.MULTILINE))
    assert {name.upper() for name in Settings.model_fields} <= mentioned


def test_example_values_load(monkeypatch: pytest.MonkeyPatch) -> None:
    for line in EXAMPLE.read_text().splitlines():
        if line and not line.startswith("#"):
            name, value = line.split("=", 1)
            monkeypatch.setenv(name, value)
    assert load_settings().invoice_number_prefix == "INV-"
