"""Export rows of real instances load into both warehouses under their union schema, intact."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pydicom
import pytest

from shared.dicom.attributes import tag_of
from shared.dicom.bigquery_rows import (
    MAX_NESTING,
    RowExtras,
    flattened_row,
    json_row,
    union_schemas,
)
from shared.dicom.json_model import dataset_to_json
from shared.domain.records import DicomJson
from shared.ports.warehouse import Schema, WriteDisposition
from tests.contract import test_warehouse_contract
from tests.contract.test_warehouse_contract import Bench
from tests.testdata import bundled_path

# The warehouse contract's fixture: DuckDB ("local") and the bqemulator ("gcp").
bench = test_warehouse_contract.bench

BUNDLED = ["CT_small.dcm", "MR_small.dcm", "rtplan.dcm"]
EXTRAS = RowExtras("STANDARD", 39206, 11000, "2026-01-02T03:04:05.123456Z")


def bundled_metadata(name: str) -> DicomJson:
    return dataset_to_json(pydicom.dcmread(bundled_path(name)))


def edge_cases() -> DicomJson:
    """Values at the edges of their BigQuery types, and sequences nested to the limit."""
    deepest: DicomJson = {tag_of("ReferencedSOPInstanceUID"): {"vr": "UI", "Value": ["deep"]}}
    for _ in range(MAX_NESTING - 1):
        deepest = {tag_of("ReferencedImageSequence"): {"vr": "SQ", "Value": [deepest]}}
    return {
        tag_of("SOPInstanceUID"): {"vr": "UI", "Value": ["1.2.826.0.1.3680043.10.1234.9"]},
        tag_of("StudyDate"): {"vr": "DA", "Value": ["00010101"]},
        tag_of("StudyTime"): {"vr": "TM", "Value": ["235959.999999"]},
        tag_of("AcquisitionDateTime"): {"vr": "DT", "Value": ["20240229233045.5-0500"]},
        tag_of("OperatorsName"): {
            "vr": "PN",
            "Value": [{"Alphabetic": "Yamada^Tarou", "Ideographic": "山田^太郎"}, None],
        },
        tag_of("FileOffsetInContainer"): {"vr": "UV", "Value": [2**63 - 1]},
        tag_of("RecommendedDisplayFrameRateInFloat"): {"vr": "FL", "Value": [1e-300]},
        **deepest,
        "00431001": {"vr": "OB", "InlineBinary": "AAE="},
    }


def typed(value: Any, field: dict[str, Any]) -> Any:
    """An NDJSON value as `Warehouse.query_rows` gives it back under `field`."""
    if field["mode"] == "REPEATED":
        return [_typed_scalar(item, field) for item in value or []]
    return None if value is None else _typed_scalar(value, field)


def _typed_scalar(value: Any, field: dict[str, Any]) -> Any:
    kind = field["type"]
    if kind == "RECORD":
        return {child["name"]: typed(value.get(child["name"]), child) for child in field["fields"]}
    if kind == "DATE":
        return dt.date.fromisoformat(value)
    if kind == "TIME":
        return dt.time.fromisoformat(value)
    if kind == "TIMESTAMP":
        return dt.datetime.fromisoformat(value).astimezone(dt.UTC)
    return value


def expected_rows(rows: list[dict[str, Any]], schema: Schema) -> list[dict[str, Any]]:
    return [{f["name"]: typed(row.get(f["name"]), f) for f in schema} for row in rows]


def by_uid(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: str(row["SOPInstanceUID"]))


def load(bench: Bench, rows: list[dict[str, Any]], schema: Schema) -> list[dict[str, Any]]:
    table = bench.table()
    source = bench.source("export/rows-0.ndjson", rows)
    assert bench.warehouse.load(table, schema, [source], WriteDisposition.WRITE_EMPTY) == len(rows)
    return by_uid(bench.warehouse.query_rows(table))


def test_flattened_rows_of_bundled_instances_round_trip(bench: Bench) -> None:
    converted = [flattened_row(bundled_metadata(name), EXTRAS) for name in BUNDLED]
    schema = union_schemas(schema for _, schema in converted)
    rows = [row for row, _ in converted]

    loaded = load(bench, rows, schema)

    assert loaded == by_uid(expected_rows(rows, schema))
    ct = next(row for row in loaded if row["Modality"] == "CT")
    assert ct["PatientName"]["Alphabetic"]["FamilyName"] == "CompressedSamples"
    assert ct["PatientName"]["Ideographic"] is None
    assert ct["StudyDate"] == dt.date(2004, 1, 19)
    assert ct["ImageType"] == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert {"Tag": "Tag_00090010", "Data": ["GEMS_IDEN_01"]} in ct["OtherElements"]
    assert "PixelData" in ct["DroppedTags"]
    assert ct["LastUpdated"] == dt.datetime(2026, 1, 2, 3, 4, 5, 123456, tzinfo=dt.UTC)
    plan = next(row for row in loaded if row["Modality"] == "RTPLAN")
    assert plan["PatientName"]["Alphabetic"]["MiddleName"] == "mid"
    assert plan["ImageType"] == []  # a column of the union that this instance lacks
    assert plan["FractionGroupSequence"][0]["ReferencedBeamSequence"][0]["BeamDose"] == "1.0275401"


def test_values_at_the_edges_of_their_types_round_trip(bench: Bench) -> None:
    row, schema = flattened_row(edge_cases(), EXTRAS)

    [loaded] = load(bench, [row], union_schemas([schema]))

    assert loaded == expected_rows([row], union_schemas([schema]))[0]
    assert loaded["StudyDate"] == dt.date(1, 1, 1)
    assert loaded["StudyTime"] == dt.time(23, 59, 59, 999999)
    acquired = dt.datetime(2024, 3, 1, 4, 30, 45, 500000, tzinfo=dt.UTC)
    assert loaded["AcquisitionDateTime"] == acquired
    assert loaded["OperatorsName"][0]["Ideographic"]["GivenName"] == "太郎"
    assert loaded["FileOffsetInContainer"] == 2**63 - 1
    deepest = loaded
    for _ in range(MAX_NESTING - 1):
        deepest = deepest["ReferencedImageSequence"][0]
    assert deepest["ReferencedSOPInstanceUID"] == "deep"
    assert loaded["OtherElements"] == [{"Tag": "Tag_00431001", "Data": []}]
    assert loaded["DroppedTags"] == ["Tag_00431001"]


def test_json_rows_round_trip(bench: Bench) -> None:
    extras = RowExtras("ARCHIVE", 1, 2, "2026-01-02T03:04:05Z", source_store="projects/p/s")
    converted = [json_row(bundled_metadata(name), extras) for name in BUNDLED]
    schema = union_schemas(schema for _, schema in converted)
    rows = [row for row, _ in converted]

    loaded = load(bench, rows, schema)

    assert loaded == by_uid(expected_rows(rows, schema))
    assert all(row["Metadata"][tag_of("SOPInstanceUID")]["vr"] == "UI" for row in loaded)
    assert all(tag_of("PixelData") not in row["Metadata"] for row in loaded)
    assert {row["SourceDicomStore"] for row in loaded} == {"projects/p/s"}


@pytest.mark.parametrize("name", BUNDLED)
def test_each_rows_own_schema_loads_it(bench: Bench, name: str) -> None:
    row, schema = flattened_row(bundled_metadata(name), EXTRAS)
    assert load(bench, [row], schema) == expected_rows([row], schema)
