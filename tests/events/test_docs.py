"""docs/events.md lists every catalogue type with an example that its schema accepts."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema

from dagster_billing.events import catalog

DOCS = Path(__file__).resolve().parents[2] / "docs" / "events.md"


def test_every_type_is_documented_with_a_valid_example_and_its_schema() -> None:
    text = DOCS.read_text()
    sections = dict(re.findall(r"### `([a-z._]+)`\n\n.*?```json\n(.*?)```", text, re.S))
    assert set(sections) == set(catalog.EVENT_TYPES)
    for event_type, example in sections.items():
        assert f"events/{catalog.schema_path(event_type).name}" in text
        jsonschema.validate(
            json.loads(example),
            catalog.load_schema(event_type),
            format_checker=jsonschema.FormatChecker(),
        )


def test_schema_ids_match_their_file_names() -> None:
    for event_type in catalog.EVENT_TYPES:
        schema = catalog.load_schema(event_type)
        assert schema["$id"] == catalog.dataschema(event_type)
        assert schema["title"] == event_type
        jsonschema.Draft202012Validator.check_schema(schema)
