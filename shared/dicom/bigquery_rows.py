"""BigQuery rows of one instance's metadata: Google's flattened schema (spec 8.2) or schemaJson.

Choices where Google's documentation is silent [I]:
- Values that do not fit their column (bad DA/TM/DT, text in an integer VR, NaN, a UV past
  int64, several values in a VM-1 element, sequences nested past BigQuery's limit) leave the
  element out and name it in DroppedTags; so do binary elements that hold data. Elements
  inside sequences are named by their path, "ReferencedImageSequence.PixelData".
- DroppedTags is always a column (possibly empty), as in the schemaJson column list, so every
  row's schema has it; OtherElements exists only where private or unknown elements do.
- An empty element keeps its column with a NULL value; an empty sequence has no column, as
  a RECORD needs at least one field. A multi-valued text element keeps empty values as "",
  so positions hold; a gap in a typed list (DATE, INTEGER...) drops the element instead.
- Private, unknown and keyword-less elements go to OtherElements with their values as text;
  a binary one is listed there without Data and named in DroppedTags. So are the elements of
  repeating groups past the first (overlay 6002xxxx...), whose keyword the first one holds.
- Groups 0000 (command) and 0002 (file meta) and group lengths are not exported.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from dataclasses import dataclass
from typing import Any

from pydicom import datadict

from shared.dicom.bigquery_schema import conform_row, merge_fields, union_schemas
from shared.dicom.bigquery_values import (
    BINARY_VRS,
    PN_GROUPS,
    PN_PARTS,
    SCALAR_COLUMNS,
    ValueMismatch,
    as_text,
    person_name,
)
from shared.domain.records import DicomJson
from shared.errors import InvalidArgument
from shared.ports.warehouse import Schema

__all__ = ["RowExtras", "conform_row", "flattened_row", "json_row", "union_schemas"]

logger = logging.getLogger(__name__)

STORAGE_CLASSES = frozenset({"STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE"})
MAX_NESTING = 15  # BigQuery's limit on nested RECORD levels, counted as normalize_schema does
_INT64_MAX = 2**63 - 1
_TAG = re.compile(r"[0-9A-Fa-f]{8}")
_STUDY_UID, _SERIES_UID, _SOP_UID = "0020000D", "0020000E", "00080018"
_FLATTENED_EXTRAS = (
    "StorageClass",
    "BlobStorageSize",
    "StructuredStorageSize",
    "LastUpdated",
    "Type",
    "SourceDicomStore",  # only with includeSourceStore
)


@dataclass(frozen=True)
class RowExtras:
    """Non-DICOM columns of an exported row."""

    storage_class: str  # StorageClass column (STANDARD, NEARLINE, COLDLINE, ARCHIVE)
    blob_storage_size: int  # BlobStorageSize: bytes of the stored instance
    structured_storage_size: int  # StructuredStorageSize: bytes of its metadata
    last_updated: str  # LastUpdated: RFC 3339 UTC timestamp, e.g. 2026-01-02T03:04:05.123456Z
    source_store: str | None = None  # SourceDicomStore column, only when includeSourceStore
    type: str = "CREATE"  # Type column


def flattened_row(metadata: DicomJson, extras: RowExtras) -> tuple[dict[str, Any], Schema]:
    """The instance as one row of Google's flattened schema, and that row's own schema."""
    _check_metadata(metadata)
    columns = _extra_columns(extras)
    flattener = _Flattener()
    row, fields = flattener.record(metadata, 1, "")
    dropped = list(dict.fromkeys(flattener.dropped))
    fields.append(_field("DroppedTags", "STRING", "REPEATED"))
    row["DroppedTags"] = dropped
    for name in _FLATTENED_EXTRAS:
        if name in columns:
            _put(row, fields, name, columns)
    if dropped:
        logger.debug("%s: %d elements not exported", row.get("SOPInstanceUID"), len(dropped))
    return row, fields


def json_row(metadata: DicomJson, extras: RowExtras) -> tuple[dict[str, Any], Schema]:
    """The instance as one row of the schemaJson mode (spec 8.3): all its metadata as JSON.

    Bulk elements (BulkDataURI) are left out of Metadata and named in DroppedTags: the URI is
    relative to the store, and the value was never in the metadata. InlineBinary stays.
    """
    _check_metadata(metadata)
    columns = _extra_columns(extras)
    dropped: list[str] = []
    row: dict[str, Any] = {}
    fields: Schema = []
    for name, tag in (
        ("StudyInstanceUID", _STUDY_UID),
        ("SeriesInstanceUID", _SERIES_UID),
        ("SOPInstanceUID", _SOP_UID),
    ):
        fields.append(_field(name, "STRING"))
        row[name] = _first_text(metadata.get(tag))
    if "SourceDicomStore" in columns:
        _put(row, fields, "SourceDicomStore", columns)
    fields.append(_field("Metadata", "JSON"))
    row["Metadata"] = _without_bulk(metadata, "", dropped)
    _put(row, fields, "StructuredStorageSize", columns)
    fields.append(_field("DroppedTags", "STRING", "REPEATED"))
    row["DroppedTags"] = list(dict.fromkeys(dropped))
    for name in ("StorageClass", "LastUpdated", "BlobStorageSize", "Type"):
        _put(row, fields, name, columns)
    return row, fields


# --- the dictionary ---------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Column:
    keyword: str
    vr: str  # as the dictionary gives it, choices included ("US or SS")
    repeated: bool


_SKIPPED = _Column("", "", False)


@functools.lru_cache(maxsize=32768)
def _column_of(tag: str) -> _Column | None:
    """The column of a tag, None for OtherElements, _SKIPPED for elements never exported."""
    if not isinstance(tag, str) or not _TAG.fullmatch(tag):
        raise InvalidArgument(f"metadata key {str(tag)[:20]!r} is not a DICOM tag")
    number = int(tag, 16)
    group = number >> 16
    if group in (0x0000, 0x0002) or number & 0xFFFF == 0:
        return _SKIPPED
    if group & 1:
        return None
    entry = datadict.DicomDictionary.get(number)
    if entry is None:
        mask = datadict.mask_match(number)
        # A repeating group's keyword names its first group only: two overlays can't share it.
        if mask is None or int(mask.replace("x", "0"), 16) != number:
            return None
        entry = datadict.RepeatersDictionary[mask]
    vr, vm, _name, _retired, keyword = entry
    return _Column(keyword, vr, vm != "1") if keyword else None


def _name_of(tag: str) -> str:
    """The column name of a tag, file meta included, else its OtherElements name."""
    column = _column_of(tag)
    if column is _SKIPPED:
        keyword = datadict.keyword_for_tag(int(tag, 16))
    else:
        keyword = column.keyword if column is not None else ""
    return keyword or f"Tag_{tag.upper()}"


# --- flattening -------------------------------------------------------------------------------
class _Flattener:
    """Builds the row and schema of one instance, collecting what it could not export."""

    def __init__(self) -> None:
        self.dropped: list[str] = []

    def record(self, item: DicomJson, depth: int, path: str) -> tuple[dict[str, Any], Schema]:
        """The row and fields of a dataset whose fields sit `depth` RECORD levels deep."""
        row: dict[str, Any] = {}
        fields: Schema = []
        others: list[dict[str, Any]] = []
        for tag, element in item.items():
            column = _column_of(tag)
            if column is _SKIPPED:
                continue
            if column is None:
                others.extend(self.other(tag, element, path))
                continue
            try:
                converted = self.element(column, element, depth, path + column.keyword)
            except ValueMismatch:
                self.dropped.append(path + column.keyword)
                continue
            if converted is not None:
                field, value = converted
                fields.append(field)
                if value is not None:
                    row[column.keyword] = value
        if others and depth + 1 > MAX_NESTING:
            self.dropped.extend(path + entry["Tag"] for entry in others)
        elif others:
            fields.append(_other_elements_field())
            row["OtherElements"] = others
        return row, fields

    def element(
        self, column: _Column, element: Any, depth: int, path: str
    ) -> tuple[dict[str, Any], Any] | None:
        """(field, value) of a dictionary element; None when it has no column."""
        if not isinstance(element, dict):
            raise ValueMismatch("not a DICOM JSON element")
        vr = column.vr
        if " or " in vr:
            # The dictionary leaves the choice to the instance (US or SS, OB or OW...).
            if element.get("vr") not in vr.split(" or "):
                raise ValueMismatch("VR outside the dictionary's choices")
            vr = element["vr"]
        values = element.get("Value")
        if vr in BINARY_VRS or "BulkDataURI" in element or "InlineBinary" in element:
            if values or element.get("BulkDataURI") or element.get("InlineBinary"):
                raise ValueMismatch("binary")
            return None
        if values is None:
            values = []
        elif not isinstance(values, list):
            raise ValueMismatch("Value is not a list")
        if vr == "SQ":  # its VM of 1 counts the sequence, not the items
            return self.sequence(column.keyword, values, depth, path)
        if not column.repeated and len(values) > 1:
            raise ValueMismatch("several values in a VM 1 element")
        if vr == "PN":
            return _person_names(column, values, depth)
        return _scalars(column, vr, values)

    def sequence(
        self, keyword: str, items: list[Any], depth: int, path: str
    ) -> tuple[dict[str, Any], Any] | None:
        if not items:
            return None
        if depth + 1 > MAX_NESTING or not all(isinstance(item, dict) for item in items):
            raise ValueMismatch("sequence too deep, or items that are not datasets")
        converted = [self.record(item, depth + 1, f"{path}.") for item in items]
        # Items follow the same rules, so their fields never conflict: rows need no conforming.
        fields = merge_fields(schema for _, schema in converted)
        if not fields:
            return None
        field = {"name": keyword, "type": "RECORD", "mode": "REPEATED", "fields": fields}
        return field, [row for row, _ in converted]

    def other(self, tag: str, element: Any, path: str) -> list[dict[str, Any]]:
        """The OtherElements entry of a private or unknown element (none if it is malformed)."""
        name = f"Tag_{tag.upper()}"
        values = element.get("Value") if isinstance(element, dict) else None
        if not isinstance(element, dict) or not isinstance(values, list | None):
            self.dropped.append(path + name)
            return []
        entry: dict[str, Any] = {"Tag": name}
        if element.get("BulkDataURI") or element.get("InlineBinary"):
            self.dropped.append(path + name)
        elif values:
            entry["Data"] = [as_text(value, element.get("vr")) for value in values]
        return [entry]


def _scalars(column: _Column, vr: str, values: list[Any]) -> tuple[dict[str, Any], Any]:
    if vr not in SCALAR_COLUMNS:
        raise ValueMismatch(f"no column type for VR {vr}")
    kind, convert = SCALAR_COLUMNS[vr]
    field = _field(column.keyword, kind, "REPEATED" if column.repeated else "NULLABLE")

    def blank(value: Any) -> bool:
        # Text columns keep "" as a value; elsewhere it can only mean "no value".
        return value is None or (kind != "STRING" and isinstance(value, str) and not value.strip())

    gaps = sum(map(blank, values))
    if gaps == len(values):
        return field, None
    if not column.repeated:
        return field, convert(values[0])
    if gaps and kind != "STRING":
        raise ValueMismatch("a gap in a typed list")
    return field, ["" if value is None else convert(value) for value in values]


def _person_names(column: _Column, values: list[Any], depth: int) -> tuple[dict[str, Any], Any]:
    if depth + 2 > MAX_NESTING:
        raise ValueMismatch("person name nested too deep")
    records = [{} if value is None else person_name(value) for value in values]
    field = _person_name_field(column.keyword, column.repeated)
    if not any(records):
        return field, None
    return field, records if column.repeated else records[0]


def _without_bulk(item: DicomJson, path: str, dropped: list[str]) -> DicomJson:
    kept: DicomJson = {}
    for tag, element in item.items():
        if not isinstance(element, dict):
            kept[tag] = element
            continue
        name = path + _name_of(tag)
        if "BulkDataURI" in element:
            dropped.append(name)
            continue
        values = element.get("Value")
        if element.get("vr") == "SQ" and isinstance(values, list):
            items = [
                _without_bulk(v, f"{name}.", dropped) if isinstance(v, dict) else v for v in values
            ]
            element = {**element, "Value": items}
        kept[tag] = element
    return kept


# --- fields and extras ------------------------------------------------------------------------
def _field(name: str, kind: str, mode: str = "NULLABLE") -> dict[str, Any]:
    return {"name": name, "type": kind, "mode": mode}


def _person_name_field(name: str, repeated: bool) -> dict[str, Any]:
    # PN is the documented exception: its column always has the whole structure.
    groups = [
        {**_field(group, "RECORD"), "fields": [_field(part, "STRING") for part in PN_PARTS]}
        for group in PN_GROUPS
    ]
    return {**_field(name, "RECORD", "REPEATED" if repeated else "NULLABLE"), "fields": groups}


def _other_elements_field() -> dict[str, Any]:
    fields = [_field("Tag", "STRING"), _field("Data", "STRING", "REPEATED")]
    return {**_field("OtherElements", "RECORD", "REPEATED"), "fields": fields}


def _put(
    row: dict[str, Any], fields: Schema, name: str, columns: dict[str, tuple[str, Any]]
) -> None:
    kind, value = columns[name]
    fields.append(_field(name, kind))
    row[name] = value


def _extra_columns(extras: RowExtras) -> dict[str, tuple[str, Any]]:
    """The non-DICOM columns as {name: (type, value)}; InvalidArgument for a bad value."""
    if extras.storage_class not in STORAGE_CLASSES:
        raise InvalidArgument(f"unknown storage class {extras.storage_class!r}")
    sizes = {
        "BlobStorageSize": extras.blob_storage_size,
        "StructuredStorageSize": extras.structured_storage_size,
    }
    for name, size in sizes.items():
        if isinstance(size, bool) or not isinstance(size, int) or not 0 <= size <= _INT64_MAX:
            raise InvalidArgument(f"{name} must be a byte count, not {size!r}")
    if not isinstance(extras.type, str) or not extras.type:
        raise InvalidArgument("the Type column needs a value such as CREATE")
    columns: dict[str, tuple[str, Any]] = {
        "StorageClass": ("STRING", extras.storage_class),
        "BlobStorageSize": ("INTEGER", extras.blob_storage_size),
        "StructuredStorageSize": ("INTEGER", extras.structured_storage_size),
        "LastUpdated": ("TIMESTAMP", _rfc3339_utc(extras.last_updated)),
        "Type": ("STRING", extras.type),
    }
    if extras.source_store is not None:
        if not isinstance(extras.source_store, str) or not extras.source_store:
            raise InvalidArgument("SourceDicomStore must name a store")
        columns["SourceDicomStore"] = ("STRING", extras.source_store)
    return columns


def _rfc3339_utc(text: str) -> str:
    try:
        moment = dt.datetime.fromisoformat(text)
    except (TypeError, ValueError):
        moment = None
    if moment is None or moment.tzinfo is None:
        raise InvalidArgument(f"LastUpdated must be an RFC 3339 timestamp, not {text!r}")
    return moment.astimezone(dt.UTC).replace(tzinfo=None).isoformat() + "Z"


def _check_metadata(metadata: Any) -> None:
    if not isinstance(metadata, dict):
        raise InvalidArgument("instance metadata must be a DICOM JSON object")


def _first_text(element: Any) -> str | None:
    values = element.get("Value") if isinstance(element, dict) else None
    first = values[0] if isinstance(values, list) and values else None
    return first if isinstance(first, str) else None
