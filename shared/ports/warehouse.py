"""Warehouse: the BigQuery side of export, one NDJSON load job into one table."""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Protocol, runtime_checkable

from shared.errors import InvalidArgument

# BigQuery JSON schema as `bq show --schema` prints it: [{"name", "type", "mode"?, "fields"?}].
Schema = list[dict[str, Any]]

MAX_TABLE_URI = 2000  # Google's limit on bigqueryDestination.tableUri
TYPES = frozenset(
    {"STRING", "INTEGER", "FLOAT", "BOOLEAN", "DATE", "TIME", "TIMESTAMP", "JSON", "RECORD"}
)
MODES = frozenset({"NULLABLE", "REPEATED"})
# Standard SQL spellings BigQuery accepts in a schema, folded to the legacy names it reports.
_TYPE_ALIASES = {"INT64": "INTEGER", "FLOAT64": "FLOAT", "BOOL": "BOOLEAN", "STRUCT": "RECORD"}
_MAX_DEPTH = 15  # BigQuery's limit on nested RECORD levels
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9._-]{1,220}[a-z0-9]$")
_FIELD_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,299}$")
# A project id may carry a legacy domain prefix ("example.com:project"), which holds dots,
# so the table and dataset are taken from the right of the URI.
_PROJECT_RE = re.compile(r"^(?:[a-z0-9][a-z0-9.-]{0,62}:)?[a-z][a-z0-9-]{0,61}[a-z0-9]$")
_DATASET_RE = re.compile(r"^[A-Za-z0-9_]{1,1024}$")
_TABLE_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,1023}$")
_JOB_ID_RE = re.compile(r"^[A-Za-z0-9_-]{1,1024}$")  # BigQuery's rule for job ids


@dataclass(frozen=True)
class TableRef:
    """One BigQuery table, written by users as bq://PROJECT.DATASET.TABLE."""

    project: str
    dataset: str
    table: str

    @classmethod
    def parse(cls, uri: str) -> TableRef:
        """The table a `bq://` URI names; InvalidArgument when it names none."""
        if len(uri) > MAX_TABLE_URI:
            raise InvalidArgument(f"tableUri is longer than {MAX_TABLE_URI} characters")
        head, _, table = uri.removeprefix("bq://").rpartition(".")
        project, _, dataset = head.rpartition(".")
        valid = (
            uri.startswith("bq://")
            and _PROJECT_RE.match(project)
            and _DATASET_RE.match(dataset)
            and _TABLE_RE.match(table)
        )
        if not valid:
            raise InvalidArgument(
                f"tableUri must have the form bq://PROJECT.DATASET.TABLE: {uri!r}"
            )
        return cls(project, dataset, table)

    def __str__(self) -> str:
        return f"bq://{self.project}.{self.dataset}.{self.table}"


class WriteDisposition(StrEnum):
    """What a load does to the rows already in the table (BigQuery's names)."""

    WRITE_EMPTY = "WRITE_EMPTY"
    WRITE_TRUNCATE = "WRITE_TRUNCATE"
    WRITE_APPEND = "WRITE_APPEND"


@runtime_checkable
class Warehouse(Protocol):
    """Tables of a BigQuery-like warehouse. Errors come from shared.errors only.

    InvalidArgument: a bad schema, source URI or row. NotFound: a missing dataset or source
    object. Conflict: WRITE_EMPTY into a table that has rows. Unavailable: the backend failed.
    """

    def row_count(self, table: TableRef) -> int | None:
        """Rows in the table, or None when the table does not exist."""
        ...

    def load(
        self,
        table: TableRef,
        schema: Schema,
        sources: list[str],
        disposition: WriteDisposition,
        *,
        job_id: str | None = None,
    ) -> int:
        """Load newline-delimited JSON objects from `sources` (gs://BUCKET/OBJECT) in one job.

        With a `job_id` the load happens at most once: when a load with that id already
        succeeded, nothing is loaded again and its row count is returned (a retried export
        never appends its rows twice). After a failed load with that id, a call raises an error
        again (BigQuery repeats the job's error; DuckDB, which keeps no failed jobs, retries).

        All or nothing: a bad line leaves the table as it was. A missing table is created with
        `schema`. WRITE_EMPTY fails with Conflict when the table has rows (an existing empty
        table is fine, and is widened as by WRITE_APPEND). WRITE_TRUNCATE replaces the rows and
        the schema. WRITE_APPEND adds rows and widens the table by the new NULLABLE/REPEATED
        fields of `schema`, which must keep every existing field with its type and mode.
        Returns the number of rows loaded.
        """
        ...

    def query_rows(self, table: TableRef) -> list[dict[str, Any]]:
        """Every row, in no set order, typed as the BigQuery client types them; NotFound if none.

        RECORD columns are dicts, REPEATED columns lists (never None), JSON columns parsed,
        DATE and TIME datetime.date/time, TIMESTAMP an aware datetime in UTC.
        """
        ...


# --- rules shared by the adapters, so each refuses the same sources and schemas -------------
def parse_source_uri(uri: str) -> tuple[str, str]:
    """(bucket, object) of a gs:// source; the object may hold one '*' wildcard."""
    bucket, _, name = uri.removeprefix("gs://").partition("/")
    # Object names become paths locally: refuse every segment that could climb out of a bucket.
    segments = name.split("/")
    valid = (
        uri.startswith("gs://")
        and _BUCKET_RE.match(bucket)
        and not any(s in ("", ".", "..") or "\\" in s or "\x00" in s for s in segments)
        and name.count("*") <= 1
    )
    if not valid:
        raise InvalidArgument(f"source must be a gs://BUCKET/OBJECT URI: {uri!r}")
    return bucket, name


def validate_job_id(job_id: str) -> str:
    """The job id unchanged, or InvalidArgument (letters, digits, '_' and '-' only)."""
    if not _JOB_ID_RE.match(job_id):
        raise InvalidArgument(f"invalid load job id {job_id!r}")
    return job_id


def canonical_type(name: str) -> str:
    """BigQuery's legacy type name (INTEGER, RECORD...) for any spelling it accepts."""
    upper = name.upper()
    return _TYPE_ALIASES.get(upper, upper)


def normalize_schema(schema: Schema) -> Schema:
    """`schema` checked against BigQuery's rules, types and modes spelled canonically."""
    if not isinstance(schema, list) or not schema:
        raise InvalidArgument("a table schema needs at least one field")
    return _normalize_fields(schema, "", 1)


def _normalize_fields(fields: list[Any], parent: str, depth: int) -> Schema:
    if depth > _MAX_DEPTH:
        raise InvalidArgument(f"field {parent} nests RECORDs deeper than {_MAX_DEPTH} levels")
    result = [_normalize_field(field, parent, depth) for field in fields]
    seen: set[str] = set()
    for field in result:
        # BigQuery column names are case-insensitive: PatientID and patientid clash.
        if field["name"].lower() in seen:
            raise InvalidArgument(f"duplicate field name {parent}{field['name']}")
        seen.add(field["name"].lower())
    return result


def _normalize_field(field: Any, parent: str, depth: int) -> dict[str, Any]:
    if not isinstance(field, dict) or not isinstance(field.get("name"), str):
        raise InvalidArgument(f"schema field under {parent or 'the table'} has no name")
    name = field["name"]
    path = f"{parent}{name}"
    if not _FIELD_RE.match(name):
        raise InvalidArgument(f"invalid field name {path!r}")
    kind = canonical_type(str(field.get("type", "")))
    mode = str(field.get("mode") or "NULLABLE").upper()
    if kind not in TYPES:
        raise InvalidArgument(f"field {path} has unsupported type {field.get('type')!r}")
    if mode not in MODES:
        raise InvalidArgument(f"field {path} has unsupported mode {field.get('mode')!r}")
    normalized: dict[str, Any] = {"name": name, "type": kind, "mode": mode}
    children = field.get("fields")
    if kind == "RECORD":
        if not isinstance(children, list) or not children:
            raise InvalidArgument(f"RECORD field {path} needs at least one field")
        normalized["fields"] = _normalize_fields(children, f"{path}.", depth + 1)
    elif children:
        raise InvalidArgument(f"field {path} of type {kind} cannot have sub-fields")
    return normalized


def schema_additions(existing: Schema, wanted: Schema) -> list[tuple[tuple[str, ...], Schema]]:
    """Fields of `wanted` missing from `existing`, as (parent field path, new fields) pairs.

    This is BigQuery's ALLOW_FIELD_ADDITION: `wanted` must keep every existing field with its
    type and mode (InvalidArgument otherwise); new fields may appear at any level.
    """
    additions: list[tuple[tuple[str, ...], Schema]] = []
    _collect_additions(existing, wanted, (), additions)
    return additions


def _collect_additions(
    existing: Schema,
    wanted: Schema,
    parent: tuple[str, ...],
    additions: list[tuple[tuple[str, ...], Schema]],
) -> None:
    by_name = {field["name"].lower(): field for field in wanted}
    for old in existing:
        path = ".".join((*parent, old["name"]))
        new = by_name.pop(old["name"].lower(), None)
        if new is None:
            raise InvalidArgument(f"schema does not match the table: field {path} is missing")
        if (new["type"], new["mode"]) != (old["type"], old["mode"]):
            raise InvalidArgument(
                f"schema does not match the table: field {path} changed from "
                f"{old['mode']} {old['type']} to {new['mode']} {new['type']}"
            )
        if old["type"] == "RECORD":
            _collect_additions(old["fields"], new["fields"], (*parent, old["name"]), additions)
    if by_name:
        additions.append((parent, list(by_name.values())))
