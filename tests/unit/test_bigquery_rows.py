"""Unit tests of shared.dicom.bigquery_rows: Google's flattened schema, schemaJson, unions."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.dicom.attributes import tag_of
from shared.dicom.bigquery_rows import (
    MAX_NESTING,
    RowExtras,
    conform_row,
    flattened_row,
    json_row,
    union_schemas,
)
from shared.errors import InvalidArgument
from shared.ports.warehouse import Schema, normalize_schema

EXTRAS = RowExtras("STANDARD", 1234, 56, "2026-01-02T03:04:05.123456Z")
PN_PARTS = ["FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix"]
PN_FIELDS = [
    {
        "name": group,
        "type": "RECORD",
        "mode": "NULLABLE",
        "fields": [{"name": p, "type": "STRING", "mode": "NULLABLE"} for p in PN_PARTS],
    }
    for group in ("Alphabetic", "Ideographic", "Phonetic")
]


def el(vr: str, *values: Any) -> dict[str, Any]:
    """A DICOM JSON element; no values gives an empty one."""
    return {"vr": vr, "Value": list(values)} if values else {"vr": vr}


def flat(**elements: dict[str, Any]) -> tuple[dict[str, Any], Schema]:
    """The flattened row and schema of elements given by keyword, in tag order as stored."""
    metadata = dict(sorted((tag_of(name), element) for name, element in elements.items()))
    row, schema = flattened_row(metadata, EXTRAS)
    assert normalize_schema(schema) == schema  # canonical already, and valid for BigQuery
    return row, schema


def field(schema: Schema, name: str) -> dict[str, Any]:
    return next(f for f in schema if f["name"] == name)


def names(schema: Schema) -> list[str]:
    return [f["name"] for f in schema]


def dicom_columns(row: dict[str, Any]) -> dict[str, Any]:
    extras = {"DroppedTags", "StorageClass", "BlobStorageSize", "StructuredStorageSize"}
    return {k: v for k, v in row.items() if k not in extras | {"LastUpdated", "Type"}}


def nested(levels: int, leaf: dict[str, Any]) -> dict[str, Any]:
    """`leaf` as the item of the innermost of `levels` nested sequences.

    Each dataset around it holds its level as ReferencedSOPClassUID: "1" the top one.
    """
    item = leaf
    for level in range(levels, 0, -1):
        item = {
            tag_of("ReferencedImageSequence"): el("SQ", item),
            tag_of("ReferencedSOPClassUID"): el("UI", str(level)),
        }
    return item


def innermost(row: dict[str, Any], levels: int) -> dict[str, Any]:
    for _ in range(levels):
        row = row["ReferencedImageSequence"][0]
    return row


# --- columns and types ------------------------------------------------------------------------
def test_columns_are_keywords_typed_by_the_dictionary() -> None:
    row, schema = flat(
        Modality=el("CS", "CT"),
        SOPInstanceUID=el("UI", "1.2.3"),
        StudyDescription=el("LO", "Head"),
        Rows=el("US", 512),
        SliceThickness=el("DS", 2.5),
        InstanceNumber=el("IS", 7),
        RecommendedDisplayFrameRateInFloat=el("FL", 29.97),
        RescaleIntercept=el("DS", -1024),
        ReferencedFrameNumber=el("IS", 1, 2),
        PixelPaddingRangeLimit=el("US", 1),
        DimensionIndexPointer=el("AT", "0020000d"),
    )
    assert dicom_columns(row) == {
        "Modality": "CT",
        "SOPInstanceUID": "1.2.3",
        "StudyDescription": "Head",
        "Rows": 512,
        "SliceThickness": "2.5",
        "InstanceNumber": "7",
        "RecommendedDisplayFrameRateInFloat": 29.97,
        "RescaleIntercept": "-1024",
        "ReferencedFrameNumber": ["1", "2"],
        "PixelPaddingRangeLimit": 1,
        "DimensionIndexPointer": "0020000D",
    }
    types = {f["name"]: (f["type"], f["mode"]) for f in schema}
    assert types["Rows"] == ("INTEGER", "NULLABLE")
    assert types["SliceThickness"] == ("STRING", "NULLABLE")
    assert types["RecommendedDisplayFrameRateInFloat"] == ("FLOAT", "NULLABLE")
    assert types["ReferencedFrameNumber"] == ("STRING", "REPEATED")
    assert types["DimensionIndexPointer"] == ("STRING", "NULLABLE")
    assert row["DroppedTags"] == []


def test_the_dictionary_vr_decides_not_the_elements() -> None:
    # Rows is US in the dictionary: a file that wrote it as IS text still gets an INTEGER.
    row, schema = flat(Rows=el("IS", "256"), Modality=el("UN", "MR"))
    assert (row["Rows"], field(schema, "Rows")["type"]) == (256, "INTEGER")
    assert row["Modality"] == "MR"


def test_a_choice_in_the_dictionary_takes_the_elements_vr() -> None:
    row, schema = flat(
        SmallestImagePixelValue=el("SS", -5),
        LUTData=el("US", 0, 4095),
        LargestImagePixelValue=el("LO", "x"),
    )
    assert row["SmallestImagePixelValue"] == -5
    assert field(schema, "LUTData") == {"name": "LUTData", "type": "INTEGER", "mode": "REPEATED"}
    assert row["LUTData"] == [0, 4095]
    assert row["DroppedTags"] == ["LargestImagePixelValue"]


def test_file_meta_group_lengths_and_commands_are_not_exported() -> None:
    row, schema = flattened_row(
        {
            "00000002": el("UI", "1.2"),
            "00020010": el("UI", "1.2.840.10008.1.2.1"),
            "00080000": el("UL", 10),
            "00090000": el("UL", 10),
            "00080060": el("CS", "OT"),
        },
        EXTRAS,
    )
    assert dicom_columns(row) == {"Modality": "OT"}
    assert "TransferSyntaxUID" not in names(schema)


def test_empty_elements_are_null_not_dropped() -> None:
    row, schema = flat(
        StudyDate=el("DA"),
        ImageType=el("CS"),
        PatientName=el("PN"),
        Rows={"vr": "US", "Value": [None]},
        ReferencedImageSequence=el("SQ"),
    )
    assert dicom_columns(row) == {}
    assert row["DroppedTags"] == []
    assert {"StudyDate", "ImageType", "PatientName", "Rows"} <= set(names(schema))
    # A RECORD needs a field: an empty sequence has no column at all.
    assert "ReferencedImageSequence" not in names(schema)


# --- dates and times --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("20240229", "2024-02-29"),
        ("2024.02.29", "2024-02-29"),  # ACR-NEMA form
        ("00010101", "0001-01-01"),
        ("99991231", "9999-12-31"),
        ("20230229", None),
        ("20241301", None),
        ("00000101", None),
        ("2024-02-29", None),
        ("2024", None),
        ("202402291", None),
        ("2024.0229", None),
        ("2024 229", None),
        ("\uff12\uff10\uff12\uff14\uff10\uff12\uff12\uff19", None),  # full-width digits
    ],
)
def test_da_becomes_a_date(value: str, expected: str | None) -> None:
    row, schema = flat(StudyDate=el("DA", value))
    assert row.get("StudyDate") == expected
    assert row["DroppedTags"] == ([] if expected else ["StudyDate"])
    assert ("StudyDate" in names(schema)) == bool(expected)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("07", "07:00:00"),
        ("0730", "07:30:00"),
        ("073015", "07:30:15"),
        ("073015.5", "07:30:15.500000"),
        ("073015.123456", "07:30:15.123456"),
        ("235960", "23:59:59"),  # a leap second is valid DICOM but no BigQuery TIME
        ("2400", None),
        ("1260", None),
        ("073015.1234567", None),
        ("07:30:15", None),
        ("7", None),
        ("07301", None),
    ],
)
def test_tm_becomes_a_time(value: str, expected: str | None) -> None:
    row, _ = flat(StudyTime=el("TM", value))
    assert row.get("StudyTime") == expected
    assert row["DroppedTags"] == ([] if expected else ["StudyTime"])


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2024", "2024-01-01T00:00:00Z"),
        ("202402", "2024-02-01T00:00:00Z"),
        ("20240229", "2024-02-29T00:00:00Z"),
        ("2024022913", "2024-02-29T13:00:00Z"),
        ("20240229133045", "2024-02-29T13:30:45Z"),
        ("20240229133045.5", "2024-02-29T13:30:45.500000Z"),
        ("20240229133045.5+0200", "2024-02-29T11:30:45.500000Z"),
        ("20240229233045-0500", "2024-03-01T04:30:45Z"),
        ("2024-0130", "2024-01-01T01:30:00Z"),  # a partial DT with an offset
        ("20240229133045+1400", "2024-02-28T23:30:45Z"),
        ("20240229133045+1500", None),  # no offset is more than 14 hours
        ("20240229133045-1500", None),
        ("20240229133045+0160", None),
        ("00010101000000+0100", None),  # before BigQuery's first instant once in UTC
        ("2024022913304", None),  # pydicom would silently read 13:30
        ("20241", None),
        ("20240230", None),
        ("2024-02-29T13:30:45", None),
    ],
)
def test_dt_becomes_a_utc_timestamp(value: str, expected: str | None) -> None:
    row, schema = flat(AcquisitionDateTime=el("DT", value))
    assert row.get("AcquisitionDateTime") == expected
    assert row["DroppedTags"] == ([] if expected else ["AcquisitionDateTime"])
    if expected:
        assert field(schema, "AcquisitionDateTime")["type"] == "TIMESTAMP"


def test_padding_around_dates_is_ignored_and_blank_means_empty() -> None:
    row, _ = flat(StudyDate=el("DA", " 20240101 "), StudyTime=el("TM", "  "))
    assert (row["StudyDate"], row.get("StudyTime"), row["DroppedTags"]) == ("2024-01-01", None, [])


# --- person names -----------------------------------------------------------------------------
def test_person_name_with_three_groups() -> None:
    row, schema = flat(
        PatientName=el(
            "PN",
            {
                "Alphabetic": "Yamada^Tarou^^Dr^III",
                "Ideographic": "山田^太郎",
                "Phonetic": "やまだ^たろう",
            },
        )
    )
    assert row["PatientName"] == {
        "Alphabetic": {
            "FamilyName": "Yamada",
            "GivenName": "Tarou",
            "NamePrefix": "Dr",
            "NameSuffix": "III",
        },
        "Ideographic": {"FamilyName": "山田", "GivenName": "太郎"},
        "Phonetic": {"FamilyName": "やまだ", "GivenName": "たろう"},
    }
    assert field(schema, "PatientName") == {
        "name": "PatientName",
        "type": "RECORD",
        "mode": "NULLABLE",
        "fields": PN_FIELDS,
    }


def test_person_name_keeps_its_whole_structure_when_parts_are_missing() -> None:
    row, schema = flat(PatientName=el("PN", {"Alphabetic": "Doe"}))
    assert row["PatientName"] == {"Alphabetic": {"FamilyName": "Doe"}}
    assert field(schema, "PatientName")["fields"] == PN_FIELDS
    only_given, _ = flat(PatientName=el("PN", {"Alphabetic": "^John"}))
    assert only_given["PatientName"] == {"Alphabetic": {"GivenName": "John"}}
    ideographic, _ = flat(PatientName=el("PN", {"Ideographic": "山田"}))
    assert ideographic["PatientName"] == {"Ideographic": {"FamilyName": "山田"}}


def test_multi_valued_person_names_are_a_repeated_record() -> None:
    row, schema = flat(OperatorsName=el("PN", {"Alphabetic": "A^B"}, None, {"Alphabetic": "C"}))
    assert row["OperatorsName"] == [
        {"Alphabetic": {"FamilyName": "A", "GivenName": "B"}},
        {},
        {"Alphabetic": {"FamilyName": "C"}},
    ]
    assert field(schema, "OperatorsName")["mode"] == "REPEATED"
    assert field(schema, "OperatorsName")["fields"] == PN_FIELDS


@pytest.mark.parametrize(
    "value",
    [{"Alphabetic": "a^b^c^d^e^f"}, {"Alphabetic": 5}, {"Latin": "Doe"}, "Doe^John"],
    ids=["six-components", "not-text", "unknown-group", "not-an-object"],
)
def test_a_malformed_person_name_is_dropped(value: Any) -> None:
    row, schema = flat(PatientName=el("PN", value))
    assert "PatientName" not in row
    assert "PatientName" not in names(schema)
    assert row["DroppedTags"] == ["PatientName"]


# --- multiplicity -----------------------------------------------------------------------------
def test_multi_valued_elements_are_always_lists() -> None:
    row, schema = flat(ImageType=el("CS", "ORIGINAL"), PixelSpacing=el("DS", 0.5, 0.25))
    assert row["ImageType"] == ["ORIGINAL"]
    assert row["PixelSpacing"] == ["0.5", "0.25"]
    assert field(schema, "ImageType")["mode"] == "REPEATED"
    assert field(schema, "PixelSpacing") == {
        "name": "PixelSpacing",
        "type": "STRING",
        "mode": "REPEATED",
    }


def test_a_vm_1_element_with_two_values_is_dropped_not_truncated() -> None:
    row, schema = flat(Modality=el("CS", "CT", "MR"), Rows=el("US", 1, 2))
    assert "Modality" not in row and "Rows" not in row
    assert not {"Modality", "Rows"} & set(names(schema))
    assert row["DroppedTags"] == ["Modality", "Rows"]


def test_empty_values_keep_their_place_in_text_lists_only() -> None:
    row, _ = flat(ImageType=el("CS", "ORIGINAL", None, "AXIAL"), LUTData=el("US", 1, None))
    assert row["ImageType"] == ["ORIGINAL", "", "AXIAL"]
    assert "LUTData" not in row
    assert row["DroppedTags"] == ["LUTData"]


# --- values that do not fit -------------------------------------------------------------------
@pytest.mark.parametrize(
    ("keyword", "element"),
    [
        ("Rows", el("US", "many")),
        ("Rows", el("US", 1.5)),
        ("Rows", el("US", True)),
        ("FileOffsetInContainer", el("UV", 2**64 - 1)),
        ("RecommendedDisplayFrameRateInFloat", el("FL", "NaN")),
        ("RecommendedDisplayFrameRateInFloat", el("FL", "-inf")),
        ("RecommendedDisplayFrameRateInFloat", el("FL", "fast")),
        ("DimensionIndexPointer", el("AT", "0020000")),
        ("Modality", el("CS", {"a": 1})),
        ("Modality", {"vr": "CS", "Value": "CT"}),
        ("Modality", ["CT"]),
        ("ReferencedImageSequence", el("SQ", "not an item")),
    ],
)
def test_values_that_do_not_fit_go_to_dropped_tags(keyword: str, element: Any) -> None:
    row, schema = flat(**{keyword: element, "SOPInstanceUID": el("UI", "1.2")})
    assert keyword not in row
    assert keyword not in names(schema)
    assert row["DroppedTags"] == [keyword]
    assert row["SOPInstanceUID"] == "1.2"


def test_numbers_at_the_edges_of_their_types() -> None:
    row, _ = flat(
        FileOffsetInContainer=el("UV", 2**63 - 1),
        SelectorSVValue=el("SV", -(2**63)),
        Rows=el("US", 16.0),
        Columns=el("US", " 12 "),
        RecommendedDisplayFrameRateInFloat=el("FL", 7),
    )
    assert row["FileOffsetInContainer"] == 2**63 - 1
    assert row["SelectorSVValue"] == [-(2**63)]
    assert (row["Rows"], row["Columns"]) == (16, 12)
    assert row["RecommendedDisplayFrameRateInFloat"] == 7.0
    assert isinstance(row["RecommendedDisplayFrameRateInFloat"], float)


def test_binary_elements_have_no_column_and_are_named_when_they_hold_data() -> None:
    row, schema = flat(
        PixelData={"vr": "OW", "BulkDataURI": "bulkdata/7FE00010"},
        RedPaletteColorLookupTableData={"vr": "OW", "InlineBinary": "AAE="},
        LUTData={"vr": "OW", "InlineBinary": "AAE="},
        ICCProfile=el("OB"),
    )
    assert dicom_columns(row) == {}
    assert not {"PixelData", "ICCProfile", "LUTData"} & set(names(schema))
    assert row["DroppedTags"] == ["RedPaletteColorLookupTableData", "LUTData", "PixelData"]


# --- sequences --------------------------------------------------------------------------------
def test_sequences_are_repeated_records_of_their_items() -> None:
    items = [
        {
            tag_of("ReferencedSOPInstanceUID"): el("UI", "1.1"),
            tag_of("ReferencedFrameNumber"): el("IS", 1, 2),
        },
        {
            tag_of("ReferencedSOPInstanceUID"): el("UI", "1.2"),
            tag_of("ReferencedSOPClassUID"): el("UI", "1.2.840"),
            tag_of("PurposeOfReferenceCodeSequence"): el(
                "SQ", {tag_of("CodeValue"): el("SH", "121311")}
            ),
        },
    ]
    row, schema = flat(ReferencedImageSequence=el("SQ", *items))
    assert row["ReferencedImageSequence"] == [
        {"ReferencedSOPInstanceUID": "1.1", "ReferencedFrameNumber": ["1", "2"]},
        {
            "ReferencedSOPInstanceUID": "1.2",
            "ReferencedSOPClassUID": "1.2.840",
            "PurposeOfReferenceCodeSequence": [{"CodeValue": "121311"}],
        },
    ]
    sequence = field(schema, "ReferencedImageSequence")
    assert (sequence["type"], sequence["mode"]) == ("RECORD", "REPEATED")
    assert names(sequence["fields"]) == [
        "ReferencedSOPInstanceUID",
        "ReferencedFrameNumber",
        "ReferencedSOPClassUID",
        "PurposeOfReferenceCodeSequence",
    ]
    assert field(sequence["fields"], "PurposeOfReferenceCodeSequence")["fields"] == [
        {"name": "CodeValue", "type": "STRING", "mode": "NULLABLE"}
    ]


def test_what_is_dropped_inside_a_sequence_is_named_by_its_path() -> None:
    item = {
        tag_of("ReferencedSOPInstanceUID"): el("UI", "1.1"),
        tag_of("ReferencedDateTime"): el("DT", "never"),
        "00091001": {"vr": "OB", "InlineBinary": "AAE="},
        "00090010": el("LO", "ACME"),
    }
    row, schema = flat(ReferencedImageSequence=el("SQ", item, {}))
    assert row["ReferencedImageSequence"] == [
        {
            "ReferencedSOPInstanceUID": "1.1",
            "OtherElements": [{"Tag": "Tag_00091001"}, {"Tag": "Tag_00090010", "Data": ["ACME"]}],
        },
        {},
    ]
    assert names(field(schema, "ReferencedImageSequence")["fields"]) == [
        "ReferencedSOPInstanceUID",
        "OtherElements",
    ]
    assert row["DroppedTags"] == [
        "ReferencedImageSequence.ReferencedDateTime",
        "ReferencedImageSequence.Tag_00091001",
    ]


def test_a_sequence_of_empty_items_has_no_column() -> None:
    row, schema = flat(ReferencedImageSequence=el("SQ", {}, {tag_of("Rows"): el("US")}))
    assert row["ReferencedImageSequence"] == [{}, {}]  # the items are counted still
    assert names(field(schema, "ReferencedImageSequence")["fields"]) == ["Rows"]
    empty, empty_schema = flat(ReferencedImageSequence=el("SQ", {}, {}))
    assert "ReferencedImageSequence" not in names(empty_schema)
    assert empty["DroppedTags"] == []


def test_sequences_nested_past_bigquerys_limit_are_dropped() -> None:
    leaf = {
        tag_of("ReferencedSOPInstanceUID"): el("UI", "deep"),
        tag_of("PatientName"): el("PN", {"Alphabetic": "Deep"}),
        "00090010": el("LO", "ACME"),
    }
    row, schema = flattened_row(nested(MAX_NESTING, leaf), EXTRAS)
    normalize_schema(schema)  # BigQuery's limit holds
    # The 15th sequence would put its items' fields at level 16: it goes, and is named.
    assert innermost(row, MAX_NESTING - 1) == {"ReferencedSOPClassUID": str(MAX_NESTING)}
    path = ".".join(["ReferencedImageSequence"] * MAX_NESTING)
    assert row["DroppedTags"] == [path]


def test_person_names_and_other_elements_count_their_own_levels() -> None:
    leaf = {
        tag_of("ReferencedSOPInstanceUID"): el("UI", "deep"),
        tag_of("PatientName"): el("PN", {"Alphabetic": "Deep"}),
        "00090010": el("LO", "ACME"),
    }
    row, schema = flattened_row(nested(MAX_NESTING - 1, leaf), EXTRAS)
    normalize_schema(schema)
    assert innermost(row, MAX_NESTING - 1) == {"ReferencedSOPInstanceUID": "deep"}
    path = ".".join(["ReferencedImageSequence"] * (MAX_NESTING - 1))
    assert row["DroppedTags"] == [f"{path}.PatientName", f"{path}.Tag_00090010"]


# --- private and unknown elements -------------------------------------------------------------
def test_private_elements_and_their_creators_go_to_other_elements() -> None:
    metadata = {
        tag_of("Modality"): el("CS", "CT"),
        "00430010": el("LO", "GEMS_PARM_01"),
        "00431001": el("SS", 1, -2),
        "00431002": el("DS", 2.5),
        "00431003": el("PN", {"Alphabetic": "Doe^J", "Ideographic": "ド"}),
        "00431004": el("PN", {"Alphabetic": "Roe"}),
        "00431005": el("LO"),
        "00431006": {"vr": "OB", "BulkDataURI": "bulkdata/00431006"},
        "00431007": el("SQ", {"00431008": el("LO", "x")}),
        "00431009": el("LO", "a", None),
    }
    row, schema = flattened_row(metadata, EXTRAS)
    assert row["OtherElements"] == [
        {"Tag": "Tag_00430010", "Data": ["GEMS_PARM_01"]},
        {"Tag": "Tag_00431001", "Data": ["1", "-2"]},
        {"Tag": "Tag_00431002", "Data": ["2.5"]},
        {"Tag": "Tag_00431003", "Data": ["Doe^J=ド"]},
        {"Tag": "Tag_00431004", "Data": ["Roe"]},
        {"Tag": "Tag_00431005"},
        {"Tag": "Tag_00431006"},
        {"Tag": "Tag_00431007", "Data": ['{"00431008":{"vr":"LO","Value":["x"]}}']},
        {"Tag": "Tag_00431009", "Data": ["a", ""]},
    ]
    assert field(schema, "OtherElements") == {
        "name": "OtherElements",
        "type": "RECORD",
        "mode": "REPEATED",
        "fields": [
            {"name": "Tag", "type": "STRING", "mode": "NULLABLE"},
            {"name": "Data", "type": "STRING", "mode": "REPEATED"},
        ],
    }
    assert row["DroppedTags"] == ["Tag_00431006"]
    assert row["Modality"] == "CT"


def test_unknown_and_keywordless_elements_go_to_other_elements() -> None:
    row, schema = flattened_row(
        {
            "00100003": el("LO", "unknown public"),
            "00180061": el("DS", 1.5),  # retired without a keyword
            "60000010": el("US", 512),
            "60020010": el("US", 256),  # a second overlay: OverlayRows is the first one's
        },
        EXTRAS,
    )
    assert row["OverlayRows"] == 512
    assert row["OtherElements"] == [
        {"Tag": "Tag_00100003", "Data": ["unknown public"]},
        {"Tag": "Tag_00180061", "Data": ["1.5"]},
        {"Tag": "Tag_60020010", "Data": ["256"]},
    ]
    assert names(schema).count("OverlayRows") == 1


def test_no_other_elements_column_without_such_elements() -> None:
    _, schema = flat(Modality=el("CS", "CT"))
    assert "OtherElements" not in names(schema)


# --- extras -----------------------------------------------------------------------------------
def test_extra_columns() -> None:
    extras = RowExtras(
        "COLDLINE", 10, 2, "2026-01-02T05:04:05.5+02:00", source_store="projects/p/x", type="DELETE"
    )
    row, schema = flattened_row({tag_of("Modality"): el("CS", "CT")}, extras)
    assert row == {
        "Modality": "CT",
        "DroppedTags": [],
        "StorageClass": "COLDLINE",
        "BlobStorageSize": 10,
        "StructuredStorageSize": 2,
        "LastUpdated": "2026-01-02T03:04:05.500000Z",
        "Type": "DELETE",
        "SourceDicomStore": "projects/p/x",
    }
    assert [(f["name"], f["type"], f["mode"]) for f in schema] == [
        ("Modality", "STRING", "NULLABLE"),
        ("DroppedTags", "STRING", "REPEATED"),
        ("StorageClass", "STRING", "NULLABLE"),
        ("BlobStorageSize", "INTEGER", "NULLABLE"),
        ("StructuredStorageSize", "INTEGER", "NULLABLE"),
        ("LastUpdated", "TIMESTAMP", "NULLABLE"),
        ("Type", "STRING", "NULLABLE"),
        ("SourceDicomStore", "STRING", "NULLABLE"),
    ]


def test_source_store_column_only_when_asked_for() -> None:
    row, schema = flattened_row({}, EXTRAS)
    assert "SourceDicomStore" not in row
    assert "SourceDicomStore" not in names(schema)
    assert row["Type"] == "CREATE"
    assert row["LastUpdated"] == "2026-01-02T03:04:05.123456Z"


@pytest.mark.parametrize(
    "extras",
    [
        RowExtras("HOT", 1, 1, "2026-01-02T03:04:05Z"),
        RowExtras("STANDARD", -1, 1, "2026-01-02T03:04:05Z"),
        RowExtras("STANDARD", 1, 2**63, "2026-01-02T03:04:05Z"),
        RowExtras("STANDARD", 1, True, "2026-01-02T03:04:05Z"),
        RowExtras("STANDARD", 1, 1, "2026-01-02T03:04:05"),
        RowExtras("STANDARD", 1, 1, "yesterday"),
        RowExtras("STANDARD", 1, 1, "2026-01-02T03:04:05Z", type=""),
        RowExtras("STANDARD", 1, 1, "2026-01-02T03:04:05Z", source_store=""),
    ],
    ids=[
        "storage-class",
        "negative-size",
        "huge-size",
        "bool-size",
        "no-zone",
        "not-a-time",
        "no-type",
        "empty-store",
    ],
)
def test_bad_extras_are_invalid(extras: RowExtras) -> None:
    for build in (flattened_row, json_row):
        with pytest.raises(InvalidArgument):
            build({}, extras)


@pytest.mark.parametrize(
    "metadata",
    [[], "x", {"0008006": el("CS", "CT")}, {"0008006G": el("CS", "CT")}],
    ids=["list", "text", "short-tag", "not-hex"],
)
def test_metadata_that_is_not_dicom_json_is_invalid(metadata: Any) -> None:
    for build in (flattened_row, json_row):
        with pytest.raises(InvalidArgument):
            build(metadata, EXTRAS)


# --- schemaJson mode --------------------------------------------------------------------------
def test_json_row_columns() -> None:
    metadata = {
        "00020001": {"vr": "OB", "BulkDataURI": "bulkdata/00020001"},
        tag_of("SOPInstanceUID"): el("UI", "1.2.3"),
        tag_of("PatientName"): el("PN", {"Alphabetic": "Doe^J"}),
        tag_of("StudyInstanceUID"): el("UI", "1.2"),
        tag_of("SeriesInstanceUID"): el("UI", "1.2.9"),
        tag_of("ReferencedImageSequence"): el(
            "SQ", {tag_of("PixelData"): {"vr": "OB", "BulkDataURI": "bulkdata/x/0/7FE00010"}}
        ),
        tag_of("ICCProfile"): {"vr": "OB", "InlineBinary": "AAE="},
        "00091001": {"vr": "OB", "BulkDataURI": "bulkdata/00091001"},
        tag_of("PixelData"): {"vr": "OB", "BulkDataURI": "bulkdata/7FE00010"},
    }
    extras = RowExtras("ARCHIVE", 9, 8, "2026-01-02T03:04:05Z", source_store="projects/p/s")
    row, schema = json_row(metadata, extras)
    assert normalize_schema(schema) == schema
    assert [(f["name"], f["type"], f["mode"]) for f in schema] == [
        ("StudyInstanceUID", "STRING", "NULLABLE"),
        ("SeriesInstanceUID", "STRING", "NULLABLE"),
        ("SOPInstanceUID", "STRING", "NULLABLE"),
        ("SourceDicomStore", "STRING", "NULLABLE"),
        ("Metadata", "JSON", "NULLABLE"),
        ("StructuredStorageSize", "INTEGER", "NULLABLE"),
        ("DroppedTags", "STRING", "REPEATED"),
        ("StorageClass", "STRING", "NULLABLE"),
        ("LastUpdated", "TIMESTAMP", "NULLABLE"),
        ("BlobStorageSize", "INTEGER", "NULLABLE"),
        ("Type", "STRING", "NULLABLE"),
    ]
    assert row["Metadata"] == {
        tag_of("SOPInstanceUID"): el("UI", "1.2.3"),
        tag_of("PatientName"): el("PN", {"Alphabetic": "Doe^J"}),
        tag_of("StudyInstanceUID"): el("UI", "1.2"),
        tag_of("SeriesInstanceUID"): el("UI", "1.2.9"),
        tag_of("ReferencedImageSequence"): el("SQ", {}),
        tag_of("ICCProfile"): {"vr": "OB", "InlineBinary": "AAE="},
    }
    assert row["DroppedTags"] == [
        "FileMetaInformationVersion",
        "ReferencedImageSequence.PixelData",
        "Tag_00091001",
        "PixelData",
    ]
    assert {k: v for k, v in row.items() if k not in ("Metadata", "DroppedTags")} == {
        "StudyInstanceUID": "1.2",
        "SeriesInstanceUID": "1.2.9",
        "SOPInstanceUID": "1.2.3",
        "SourceDicomStore": "projects/p/s",
        "StructuredStorageSize": 8,
        "StorageClass": "ARCHIVE",
        "LastUpdated": "2026-01-02T03:04:05Z",
        "BlobStorageSize": 9,
        "Type": "CREATE",
    }
    assert tag_of("PixelData") in metadata  # the caller's metadata is left as it was


def test_json_row_without_uids_leaves_them_null() -> None:
    row, schema = json_row({}, EXTRAS)
    assert row["SOPInstanceUID"] is None
    assert "SourceDicomStore" not in names(schema)


# --- unions -----------------------------------------------------------------------------------
def test_union_keeps_first_seen_order_and_merges_records() -> None:
    first, first_schema = flat(
        Modality=el("CS", "CT"),
        ReferencedImageSequence=el("SQ", {tag_of("ReferencedSOPInstanceUID"): el("UI", "1")}),
    )
    second, second_schema = flat(
        Rows=el("US", 1),
        Modality=el("CS", "MR"),
        ReferencedImageSequence=el(
            "SQ",
            {
                tag_of("ReferencedSOPClassUID"): el("UI", "2"),
                tag_of("PurposeOfReferenceCodeSequence"): el(
                    "SQ", {tag_of("CodeValue"): el("SH", "1")}
                ),
            },
        ),
        PatientName=el("PN", {"Alphabetic": "X"}),
    )
    union = union_schemas([first_schema, second_schema])
    assert names(union) == [*names(first_schema), "PatientName", "Rows"]
    assert names(field(union, "ReferencedImageSequence")["fields"]) == [
        "ReferencedSOPInstanceUID",
        "ReferencedSOPClassUID",
        "PurposeOfReferenceCodeSequence",
    ]
    assert field(union, "PatientName")["fields"] == PN_FIELDS
    # Rows of flattened_row load under the union as they are.
    assert conform_row(first, union) == first
    assert conform_row(second, union) == second


def test_union_of_identical_schemas_is_that_schema() -> None:
    _, schema = flat(Modality=el("CS", "CT"), ImageType=el("CS", "A"))
    assert union_schemas([schema, schema, schema]) == schema
    assert union_schemas([]) == []


def test_union_spells_types_canonically_and_compares_names_without_case() -> None:
    union = union_schemas(
        [
            [{"name": "Rows", "type": "INT64"}],
            [{"name": "rows", "type": "INTEGER", "mode": "NULLABLE"}],
        ]
    )
    assert union == [{"name": "Rows", "type": "INTEGER", "mode": "NULLABLE"}]


def test_union_resolves_conflicts_the_same_in_any_order() -> None:
    a: Schema = [
        {"name": "A", "type": "INTEGER"},
        {"name": "B", "type": "STRING"},
        {"name": "C", "type": "RECORD", "fields": [{"name": "X", "type": "DATE"}]},
    ]
    b: Schema = [
        {"name": "A", "type": "FLOAT"},
        {"name": "B", "type": "STRING", "mode": "REPEATED"},
        {"name": "C", "type": "STRING"},
    ]
    expected = [
        {"name": "A", "type": "STRING", "mode": "NULLABLE"},
        {"name": "B", "type": "STRING", "mode": "REPEATED"},
        {"name": "C", "type": "STRING", "mode": "NULLABLE"},
    ]
    assert union_schemas([a, b]) == expected
    assert union_schemas([b, a]) == expected
    assert union_schemas([a, b, a]) == expected


def test_conform_row_brings_a_row_to_a_widened_union() -> None:
    narrow: Schema = [
        {"name": "A", "type": "INTEGER"},
        {"name": "B", "type": "STRING"},
        {"name": "C", "type": "RECORD", "fields": [{"name": "X", "type": "DATE"}]},
        {
            "name": "S",
            "type": "RECORD",
            "mode": "REPEATED",
            "fields": [{"name": "F", "type": "FLOAT"}],
        },
    ]
    other: Schema = [
        {"name": "A", "type": "FLOAT"},
        {"name": "B", "type": "STRING", "mode": "REPEATED"},
        {"name": "C", "type": "STRING"},
        {"name": "S", "type": "RECORD", "fields": [{"name": "F", "type": "STRING"}]},
    ]
    union = union_schemas([narrow, other])
    row = {"A": 5, "B": "x", "C": {"X": "2024-01-01"}, "S": [{"F": 1.5}, {"F": None}]}
    assert conform_row(row, union) == {
        "A": "5",
        "B": ["x"],
        "C": '{"X":"2024-01-01"}',
        "S": [{"F": "1.5"}, {"F": None}],
    }
    with pytest.raises(InvalidArgument, match="Surprise"):
        conform_row({"Surprise": 1}, union)


@pytest.mark.parametrize(
    "schema",
    [
        [{"name": "bad name", "type": "STRING"}],
        [{"type": "STRING"}],
        ["Rows"],
        {"name": "Rows", "type": "INTEGER"},
        [{"name": "R", "type": "RECORD"}],
        [{"name": "N", "type": "NUMERIC"}],
    ],
    ids=["bad-name", "no-name", "not-a-field", "not-a-list", "empty-record", "unknown-type"],
)
def test_union_refuses_an_invalid_schema(schema: Any) -> None:
    with pytest.raises(InvalidArgument):
        union_schemas([[{"name": "Rows", "type": "INTEGER"}], schema])


def test_union_spells_modes_canonically() -> None:
    union = union_schemas([[{"name": "A", "type": "string", "mode": "repeated"}]])
    assert union == [{"name": "A", "type": "STRING", "mode": "REPEATED"}]


def test_rows_are_json_serialisable_as_bigquery_ndjson() -> None:
    row, _ = flat(
        RecommendedDisplayFrameRateInFloat=el("FL", 1e300),
        PatientName=el("PN", {"Alphabetic": "Ünïcode^Näme"}),
    )
    assert json.loads(json.dumps(row, allow_nan=False)) == row
