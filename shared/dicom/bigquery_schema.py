"""Union of export-row schemas, and rows brought to a union that had to widen a column."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from shared.errors import InvalidArgument
from shared.ports.warehouse import Schema, canonical_type, normalize_schema


def union_schemas(schemas: Iterable[Schema]) -> Schema:
    """One schema holding every field of `schemas`, fields in first-seen order.

    RECORD fields are merged recursively; names compare without case, as BigQuery's do, and
    keep their first spelling. A field seen with two modes becomes REPEATED, and one seen with
    two types becomes STRING (without sub-fields): rows written for the narrower schema then
    need `conform_row`. Rows of `flattened_row` never need it with one pydicom dictionary, as
    a keyword's type and mode follow from the dictionary alone. No schemas give [].
    """
    # Checked once, on the way out: every input field is in the union (but sub-fields of a
    # field widened to STRING, which are gone), and one check is cheaper than one per shard.
    merged = merge_fields(schemas)
    return normalize_schema(merged) if merged else []


def merge_fields(schemas: Iterable[Schema]) -> Schema:
    """`union_schemas` without the final check against BigQuery's rules."""
    fields: dict[str, _Field] = {}
    for schema in schemas:
        _merge_into(fields, schema)
    return [field.as_schema() for field in fields.values()]


def conform_row(row: dict[str, Any], schema: Schema) -> dict[str, Any]:
    """`row` reshaped for `schema`, a union of its own schema with others (`union_schemas`).

    A scalar in a field that became REPEATED becomes a one-value list; a value in a field that
    became STRING becomes text (records and lists as compact JSON). InvalidArgument when the
    row holds a field that `schema` lacks.
    """
    return _conform_record(row, normalize_schema(schema), "")


@dataclass
class _Field:
    name: str
    kind: str
    mode: str
    children: dict[str, _Field] | None

    @classmethod
    def of(cls, field: dict[str, Any]) -> _Field:
        kind, mode = _kind_and_mode(field)
        children: dict[str, _Field] | None = None
        if kind == "RECORD":
            children = {}
            _merge_into(children, field.get("fields") or [])
        return cls(field["name"], kind, mode, children)

    def absorb(self, field: dict[str, Any]) -> None:
        kind, mode = _kind_and_mode(field)
        if mode != self.mode:
            self.mode = "REPEATED"
        if kind != self.kind:
            # Any two types meet in STRING whatever the order, so every shard order agrees.
            self.kind, self.children = "STRING", None
        elif self.children is not None:
            _merge_into(self.children, field.get("fields") or [])

    def as_schema(self) -> dict[str, Any]:
        field: dict[str, Any] = {"name": self.name, "type": self.kind, "mode": self.mode}
        if self.children is not None:
            field["fields"] = [child.as_schema() for child in self.children.values()]
        return field


def _kind_and_mode(field: dict[str, Any]) -> tuple[str, str]:
    return canonical_type(str(field.get("type", ""))), str(field.get("mode") or "NULLABLE").upper()


def _merge_into(fields: dict[str, _Field], schema: Schema) -> None:
    if not isinstance(schema, list):
        raise InvalidArgument("a schema is a list of fields")
    for field in schema:
        if not isinstance(field, dict) or not isinstance(field.get("name"), str):
            raise InvalidArgument("a schema field has no name")
        key = field["name"].lower()
        existing = fields.get(key)
        if existing is None:
            fields[key] = _Field.of(field)
        else:
            existing.absorb(field)


def _conform_record(record: Any, fields: Schema, parent: str) -> dict[str, Any]:
    if not isinstance(record, dict):
        raise InvalidArgument(f"row field {parent.rstrip('.') or 'row'} is not a record")
    by_name = {field["name"].lower(): field for field in fields}
    out: dict[str, Any] = {}
    for key, value in record.items():
        field = by_name.get(key.lower())
        if field is None:
            raise InvalidArgument(f"row field {parent}{key} is not in the schema")
        path = f"{parent}{field['name']}"
        if value is not None:
            if field["mode"] == "REPEATED":
                items = value if isinstance(value, list) else [value]
                value = [_conform_value(item, field, path) for item in items]
            else:
                value = _conform_value(value, field, path)
        out[field["name"]] = value
    return out


def _conform_value(value: Any, field: dict[str, Any], path: str) -> Any:
    if field["type"] == "RECORD":
        return _conform_record(value, field["fields"], f"{path}.")
    if field["type"] != "STRING" or isinstance(value, str):
        return value
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
