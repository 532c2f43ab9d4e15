"""Contract suite for Warehouse: DuckDB locally, BigQuery (bqemulator) for the cloud adapter.

Where bqemulator 1.4 departs from BigQuery, the test says so and asserts what BigQuery does:
for "gcp" it is then a strict xfail, which fails the day the emulator is fixed. The gaps
(bqemulator 1.4.0): load jobs ignore schemaUpdateOptions (new columns are dropped),
WRITE_TRUNCATE keeps the old schema, a failed load is not atomic (the table is created and
earlier sources stay loaded), unknown fields are ignored and an array in a scalar field is
stored as text, outputRows counts the whole table, and a missing source object, a missing
dataset and WRITE_EMPTY into rows answer 400 where BigQuery answers 404, 404 and 409.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from shared.errors import Conflict, InvalidArgument, NotFound
from shared.ports.warehouse import Schema, TableRef, Warehouse, WriteDisposition

EMPTY = WriteDisposition.WRITE_EMPTY
TRUNCATE = WriteDisposition.WRITE_TRUNCATE
APPEND = WriteDisposition.WRITE_APPEND

SIMPLE: Schema = [{"name": "SOPInstanceUID", "type": "STRING"}, {"name": "Rows", "type": "INTEGER"}]
_PN_PARTS = ["FamilyName", "GivenName", "MiddleName", "NamePrefix", "NameSuffix"]
PERSON_NAME = {
    "name": "PatientName",
    "type": "RECORD",
    "fields": [
        {
            "name": group,
            "type": "RECORD",
            "fields": [{"name": p, "type": "STRING"} for p in _PN_PARTS],
        }
        for group in ("Alphabetic", "Ideographic", "Phonetic")
    ],
}
DICOM: Schema = [
    {"name": "SOPInstanceUID", "type": "STRING", "mode": "NULLABLE"},
    PERSON_NAME,
    {
        "name": "OtherElements",
        "type": "RECORD",
        "mode": "REPEATED",
        "fields": [
            {"name": "Tag", "type": "STRING"},
            {"name": "Data", "type": "STRING", "mode": "REPEATED"},
        ],
    },
    {"name": "ImageType", "type": "STRING", "mode": "REPEATED"},
    {"name": "StudyDate", "type": "DATE"},
    {"name": "StudyTime", "type": "TIME"},
    {"name": "AcquisitionDateTime", "type": "TIMESTAMP"},
    {"name": "BlobStorageSize", "type": "INTEGER"},
    {"name": "RecommendedDisplayFrameRateInFloat", "type": "FLOAT"},
    {"name": "Metadata", "type": "JSON"},
    {"name": "DroppedTags", "type": "STRING", "mode": "REPEATED"},
]


@dataclass
class Bench:
    """A warehouse under test, its dataset, and the directory its gs:// sources live in."""

    backend: str
    warehouse: Warehouse
    project: str
    dataset: str
    gcs_root: Path
    bucket: str

    def table(self, name: str = "instances") -> TableRef:
        return TableRef(self.project, self.dataset, name)

    def source(self, name: str, rows: list[dict[str, Any]] | str) -> str:
        """Write an NDJSON object (rows, or raw text) and return its gs:// URI."""
        text = rows if isinstance(rows, str) else "".join(json.dumps(r) + "\n" for r in rows)
        path = self.gcs_root / self.bucket / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        return f"gs://{self.bucket}/{name}"

    def emulator_gap(self, request: pytest.FixtureRequest, reason: str) -> None:
        # Strict (xfail_strict in pyproject): an emulator that starts to behave fails this.
        if self.backend == "gcp":
            request.applymarker(pytest.mark.xfail(reason=f"bqemulator: {reason}", strict=True))


@pytest.fixture(params=["local", "gcp"])
def bench(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Bench]:
    bucket = f"exports-{uuid.uuid4().hex[:12]}"
    if request.param == "gcp":
        from shared.adapters.gcp.bigquery_warehouse import BigQueryWarehouse

        bq = request.getfixturevalue("bigquery_emulator")
        warehouse = BigQueryWarehouse(bq.client, timeout=60)
        yield Bench("gcp", warehouse, bq.project, bq.fresh_dataset(), bq.gcs_root, bucket)
        return
    from shared.adapters.local.duckdb_warehouse import DuckDBWarehouse

    local = DuckDBWarehouse(tmp_path / "warehouse.duckdb", tmp_path / "gcs")
    yield Bench("local", local, "local", "export", tmp_path / "gcs", bucket)
    local.close()


def rows_of(n: int, start: int = 0) -> list[dict[str, Any]]:
    return [{"SOPInstanceUID": f"1.2.{i}", "Rows": i} for i in range(start, start + n)]


def by_uid(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda row: str(row["SOPInstanceUID"]))


# --- table URIs -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("bq://my-project.my_dataset.my_table", ("my-project", "my_dataset", "my_table")),
        ("bq://example.com:my-project.ds.t", ("example.com:my-project", "ds", "t")),
        ("bq://p1.DataSet_2.table-3", ("p1", "DataSet_2", "table-3")),
    ],
)
def test_parse_table_uri(uri: str, expected: tuple[str, str, str]) -> None:
    ref = TableRef.parse(uri)
    assert (ref.project, ref.dataset, ref.table) == expected
    assert str(ref) == uri


def test_table_uri_may_be_2000_characters_long() -> None:
    head = "bq://proj." + "d" * 1024 + "."
    assert TableRef.parse(head + "t" * (2000 - len(head))).project == "proj"
    with pytest.raises(InvalidArgument, match="2000"):
        TableRef.parse(head + "t" * (2001 - len(head)))


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "bq://",
        "p.d.t",
        "gs://p.d.t",
        "bq://p.d",
        "bq://P.d.t",
        "bq://-p.d.t",
        "bq://a.b.c.d",
        "bq://p..t",
        "bq://p.d.",
        "bq://p.d-x.t",
        "bq://p.d.t/x",
        "bq://p.d.t ",
    ],
)
def test_bad_table_uris_are_invalid(uri: str) -> None:
    with pytest.raises(InvalidArgument):
        TableRef.parse(uri)


# --- tables ---------------------------------------------------------------------------------
def test_implements_the_port(bench: Bench) -> None:
    assert isinstance(bench.warehouse, Warehouse)


def test_missing_table(bench: Bench) -> None:
    assert bench.warehouse.row_count(bench.table("absent")) is None
    with pytest.raises(NotFound):
        bench.warehouse.query_rows(bench.table("absent"))


def test_load_creates_the_table(bench: Bench) -> None:
    table = bench.table()
    source = bench.source("a.ndjson", rows_of(3))
    assert bench.warehouse.load(table, SIMPLE, [source], EMPTY) == 3
    assert bench.warehouse.row_count(table) == 3
    assert by_uid(bench.warehouse.query_rows(table)) == rows_of(3)


def test_empty_source_creates_an_empty_table(bench: Bench) -> None:
    table = bench.table()
    assert bench.warehouse.load(table, SIMPLE, [bench.source("none.ndjson", "")], EMPTY) == 0
    assert bench.warehouse.row_count(table) == 0
    assert bench.warehouse.query_rows(table) == []


def test_write_empty_into_an_existing_empty_table(bench: Bench) -> None:
    table = bench.table()
    bench.warehouse.load(table, SIMPLE, [bench.source("none.ndjson", "")], EMPTY)
    assert bench.warehouse.load(table, SIMPLE, [bench.source("a.ndjson", rows_of(2))], EMPTY) == 2
    assert bench.warehouse.row_count(table) == 2


def test_write_empty_widens_an_existing_empty_table(
    bench: Bench, request: pytest.FixtureRequest
) -> None:
    # BigQuery adds fields only under WRITE_APPEND; the table was empty, so the adapter uses it.
    bench.emulator_gap(request, "load jobs ignore ALLOW_FIELD_ADDITION and drop new columns")
    table = bench.table()
    bench.warehouse.load(table, SIMPLE[:1], [bench.source("none.ndjson", "")], EMPTY)
    bench.warehouse.load(table, SIMPLE, [bench.source("a.ndjson", rows_of(2))], EMPTY)
    assert by_uid(bench.warehouse.query_rows(table)) == rows_of(2)


def test_write_empty_into_rows_conflicts_and_changes_nothing(bench: Bench) -> None:
    # bqemulator answers 400 here where BigQuery answers 409; the adapter checks first anyway.
    table = bench.table()
    bench.warehouse.load(table, SIMPLE, [bench.source("a.ndjson", rows_of(2))], EMPTY)
    with pytest.raises(Conflict):
        bench.warehouse.load(table, SIMPLE, [bench.source("b.ndjson", rows_of(5, 10))], EMPTY)
    assert by_uid(bench.warehouse.query_rows(table)) == rows_of(2)


def test_truncate_replaces_the_rows(bench: Bench) -> None:
    table = bench.table()
    bench.warehouse.load(table, SIMPLE, [bench.source("a.ndjson", rows_of(4))], EMPTY)
    assert (
        bench.warehouse.load(table, SIMPLE, [bench.source("b.ndjson", rows_of(1, 7))], TRUNCATE)
        == 1
    )
    assert by_uid(bench.warehouse.query_rows(table)) == rows_of(1, 7)
    assert bench.warehouse.row_count(table) == 1


def test_truncate_into_a_missing_table_creates_it(bench: Bench) -> None:
    table = bench.table()
    assert (
        bench.warehouse.load(table, SIMPLE, [bench.source("a.ndjson", rows_of(2))], TRUNCATE) == 2
    )
    assert bench.warehouse.row_count(table) == 2


def test_truncate_takes_the_new_schema(bench: Bench, request: pytest.FixtureRequest) -> None:
    bench.emulator_gap(request, "WRITE_TRUNCATE keeps the old schema and drops new columns")
    table = bench.table()
    bench.warehouse.load(table, SIMPLE, [bench.source("a.ndjson", rows_of(2))], EMPTY)
    other: Schema = [
        {"name": "SOPInstanceUID", "type": "STRING"},
        {"name": "Note", "type": "STRING"},
    ]
    source = bench.source("b.ndjson", [{"SOPInstanceUID": "9", "Note": "n"}])
    bench.warehouse.load(table, other, [source], TRUNCATE)
    assert bench.warehouse.query_rows(table) == [{"SOPInstanceUID": "9", "Note": "n"}]


def test_append_adds_rows(bench: Bench) -> None:
    table = bench.table()
    bench.warehouse.load(table, SIMPLE, [bench.source("a.ndjson", rows_of(2))], APPEND)
    bench.warehouse.load(table, SIMPLE, [bench.source("b.ndjson", rows_of(3, 2))], APPEND)
    assert by_uid(bench.warehouse.query_rows(table)) == rows_of(5)
    assert bench.warehouse.row_count(table) == 5


def test_load_returns_the_rows_it_loaded(bench: Bench, request: pytest.FixtureRequest) -> None:
    bench.emulator_gap(request, "a load job's outputRows counts the whole table")
    table = bench.table()
    bench.warehouse.load(table, SIMPLE, [bench.source("a.ndjson", rows_of(2))], EMPTY)
    assert (
        bench.warehouse.load(table, SIMPLE, [bench.source("b.ndjson", rows_of(3, 2))], APPEND) == 3
    )


def test_append_widens_the_schema(bench: Bench, request: pytest.FixtureRequest) -> None:
    bench.emulator_gap(request, "load jobs ignore ALLOW_FIELD_ADDITION and drop new columns")
    table = bench.table()
    tag = {"name": "Tag", "type": "STRING"}
    narrow: Schema = [
        {"name": "SOPInstanceUID", "type": "STRING"},
        {"name": "Name", "type": "RECORD", "fields": [{"name": "Alphabetic", "type": "STRING"}]},
        {"name": "OtherElements", "type": "RECORD", "mode": "REPEATED", "fields": [tag]},
    ]
    # New fields at the top, inside a RECORD and inside a REPEATED RECORD.
    wide: Schema = [
        {"name": "SOPInstanceUID", "type": "STRING"},
        {
            "name": "Name",
            "type": "RECORD",
            "fields": [
                {"name": "Alphabetic", "type": "STRING"},
                {"name": "Phonetic", "type": "STRING"},
            ],
        },
        {
            "name": "OtherElements",
            "type": "RECORD",
            "mode": "REPEATED",
            "fields": [tag, {"name": "Data", "type": "STRING", "mode": "REPEATED"}],
        },
        {"name": "ImageType", "type": "STRING", "mode": "REPEATED"},
    ]
    old = {"SOPInstanceUID": "1", "Name": {"Alphabetic": "Doe^J"}, "OtherElements": [{"Tag": "a"}]}
    new = {
        "SOPInstanceUID": "2",
        "Name": {"Phonetic": "do"},
        "OtherElements": [{"Tag": "b", "Data": ["x", "y"]}],
        "ImageType": ["ORIGINAL"],
    }
    bench.warehouse.load(table, narrow, [bench.source("a.ndjson", [old])], EMPTY)
    bench.warehouse.load(table, wide, [bench.source("b.ndjson", [new])], APPEND)
    assert by_uid(bench.warehouse.query_rows(table)) == [
        {
            "SOPInstanceUID": "1",
            "Name": {"Alphabetic": "Doe^J", "Phonetic": None},
            "OtherElements": [{"Tag": "a", "Data": []}],
            "ImageType": [],
        },
        {
            "SOPInstanceUID": "2",
            "Name": {"Alphabetic": None, "Phonetic": "do"},
            "OtherElements": [{"Tag": "b", "Data": ["x", "y"]}],
            "ImageType": ["ORIGINAL"],
        },
    ]


@pytest.mark.parametrize(
    "schema",
    [
        [{"name": "SOPInstanceUID", "type": "STRING"}],  # Rows dropped
        [{"name": "SOPInstanceUID", "type": "STRING"}, {"name": "Rows", "type": "STRING"}],
        [
            {"name": "SOPInstanceUID", "type": "STRING"},
            {"name": "Rows", "type": "INTEGER", "mode": "REPEATED"},
        ],
    ],
    ids=["dropped", "retyped", "remoded"],
)
def test_append_refuses_a_schema_that_breaks_the_table(bench: Bench, schema: Schema) -> None:
    table = bench.table()
    bench.warehouse.load(table, SIMPLE, [bench.source("a.ndjson", rows_of(1))], EMPTY)
    with pytest.raises(InvalidArgument, match="Rows"):
        bench.warehouse.load(table, schema, [bench.source("b.ndjson", "")], APPEND)
    assert bench.warehouse.query_rows(table) == rows_of(1)


# --- data -----------------------------------------------------------------------------------
def test_dicom_shaped_rows_round_trip(bench: Bench) -> None:
    table = bench.table()
    full = {
        "SOPInstanceUID": "1.2.840.1",
        "PatientName": {
            "Alphabetic": {"FamilyName": "Yamada", "GivenName": "Tarou", "NamePrefix": "Dr"},
            "Ideographic": {"FamilyName": "山田", "GivenName": "太郎"},
            "Phonetic": {"FamilyName": "やまだ", "GivenName": "たろう"},
        },
        "OtherElements": [
            {"Tag": "Tag_00430010", "Data": ["GEMS_PARM_01"]},
            {"Tag": "Tag_00431001", "Data": ["a", "b"]},
            {"Tag": "Tag_00431002"},
        ],
        "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
        "StudyDate": "2024-02-29",
        "StudyTime": "23:59:58.123456",
        "AcquisitionDateTime": "2024-02-29T23:59:58.5+02:00",
        "BlobStorageSize": 2**40,
        "RecommendedDisplayFrameRateInFloat": 29.97,
        "Metadata": {"00100010": {"vr": "PN", "Value": [{"Alphabetic": "Yamada^Tarou"}]}},
        "DroppedTags": ["PixelData"],
    }
    sparse = {"SOPInstanceUID": "1.2.840.2", "PatientName": {"Alphabetic": {"FamilyName": "X"}}}
    assert (
        bench.warehouse.load(table, DICOM, [bench.source("a.ndjson", [full, sparse])], EMPTY) == 2
    )

    no_name = dict.fromkeys(_PN_PARTS)
    assert by_uid(bench.warehouse.query_rows(table)) == [
        {
            "SOPInstanceUID": "1.2.840.1",
            "PatientName": {
                "Alphabetic": {
                    **no_name,
                    "FamilyName": "Yamada",
                    "GivenName": "Tarou",
                    "NamePrefix": "Dr",
                },
                "Ideographic": {**no_name, "FamilyName": "山田", "GivenName": "太郎"},
                "Phonetic": {**no_name, "FamilyName": "やまだ", "GivenName": "たろう"},
            },
            "OtherElements": [
                {"Tag": "Tag_00430010", "Data": ["GEMS_PARM_01"]},
                {"Tag": "Tag_00431001", "Data": ["a", "b"]},
                {"Tag": "Tag_00431002", "Data": []},
            ],
            "ImageType": ["ORIGINAL", "PRIMARY", "AXIAL"],
            "StudyDate": dt.date(2024, 2, 29),
            "StudyTime": dt.time(23, 59, 58, 123456),
            "AcquisitionDateTime": dt.datetime(2024, 2, 29, 21, 59, 58, 500000, tzinfo=dt.UTC),
            "BlobStorageSize": 2**40,
            "RecommendedDisplayFrameRateInFloat": 29.97,
            "Metadata": full["Metadata"],
            "DroppedTags": ["PixelData"],
        },
        {
            "SOPInstanceUID": "1.2.840.2",
            "PatientName": {
                "Alphabetic": {**no_name, "FamilyName": "X"},
                "Ideographic": None,
                "Phonetic": None,
            },
            "OtherElements": [],
            "ImageType": [],
            "StudyDate": None,
            "StudyTime": None,
            "AcquisitionDateTime": None,
            "BlobStorageSize": None,
            "RecommendedDisplayFrameRateInFloat": None,
            "Metadata": None,
            "DroppedTags": [],
        },
    ]


def test_timestamps_are_stored_in_utc(bench: Bench) -> None:
    table = bench.table()
    schema: Schema = [
        {"name": "SOPInstanceUID", "type": "STRING"},
        {"name": "T", "type": "TIMESTAMP"},
    ]
    rows = [
        {"SOPInstanceUID": "1", "T": "2024-01-02T03:04:05Z"},
        {"SOPInstanceUID": "2", "T": "2024-01-02 03:04:05-05:00"},
        {"SOPInstanceUID": "3", "T": "2024-01-02T03:04:05.25"},
    ]
    bench.warehouse.load(table, schema, [bench.source("a.ndjson", rows)], EMPTY)
    assert [row["T"] for row in by_uid(bench.warehouse.query_rows(table))] == [
        dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 2, 8, 4, 5, tzinfo=dt.UTC),
        dt.datetime(2024, 1, 2, 3, 4, 5, 250000, tzinfo=dt.UTC),
    ]


def test_schema_spellings_of_standard_sql_are_accepted(bench: Bench) -> None:
    table = bench.table()
    schema: Schema = [
        {"name": "SOPInstanceUID", "type": "string"},
        {"name": "Rows", "type": "INT64"},
        {"name": "S", "type": "STRUCT", "fields": [{"name": "B", "type": "BOOL"}]},
    ]
    row = {"SOPInstanceUID": "1", "Rows": 5, "S": {"B": True}}
    assert bench.warehouse.load(table, schema, [bench.source("a.ndjson", [row])], EMPTY) == 1
    assert bench.warehouse.query_rows(table) == [row]


def test_several_sources_in_one_load(bench: Bench) -> None:
    table = bench.table()
    sources = [
        bench.source("shard-0.ndjson", rows_of(3, 0)),
        bench.source("shard-1.ndjson", rows_of(4, 3)),
        bench.source("shard-2.ndjson", ""),
    ]
    assert bench.warehouse.load(table, SIMPLE, sources, EMPTY) == 7
    assert by_uid(bench.warehouse.query_rows(table)) == by_uid(rows_of(7))


def test_a_wildcard_source_reads_every_match(bench: Bench) -> None:
    table = bench.table()
    bench.source("run/part-0.ndjson", rows_of(2, 0))
    bench.source("run/part-1.ndjson", rows_of(2, 2))
    bench.source("run/other.txt", "not json\n")
    source = f"gs://{bench.bucket}/run/part-*.ndjson"
    assert bench.warehouse.load(table, SIMPLE, [source], EMPTY) == 4
    assert by_uid(bench.warehouse.query_rows(table)) == rows_of(4)


def test_concurrent_appends_all_land(bench: Bench) -> None:
    table = bench.table()
    bench.warehouse.load(table, SIMPLE, [bench.source("seed.ndjson", "")], EMPTY)
    errors: list[Exception] = []

    def append(shard: int) -> None:
        try:
            source = bench.source(f"shard-{shard}.ndjson", rows_of(10, shard * 10))
            bench.warehouse.load(table, SIMPLE, [source], APPEND)
        except Exception as exc:  # surfaced by the assertion below, with the thread's error
            errors.append(exc)

    threads = [threading.Thread(target=append, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert by_uid(bench.warehouse.query_rows(table)) == by_uid(rows_of(40))


# --- failures -------------------------------------------------------------------------------
def test_a_malformed_line_fails_the_load(bench: Bench) -> None:
    table = bench.table()
    good = bench.source("good.ndjson", rows_of(2))
    bad = bench.source("bad.ndjson", json.dumps(rows_of(1, 5)[0]) + "\n{not json\n")
    with pytest.raises(InvalidArgument):
        bench.warehouse.load(table, SIMPLE, [good, bad], APPEND)


@pytest.mark.parametrize("disposition", [APPEND, TRUNCATE])
def test_a_failed_load_changes_nothing(
    bench: Bench, request: pytest.FixtureRequest, disposition: WriteDisposition
) -> None:
    bench.emulator_gap(request, "a load job is not atomic: sources before the bad one stay")
    table = bench.table()
    bench.warehouse.load(table, SIMPLE, [bench.source("seed.ndjson", rows_of(3))], EMPTY)
    good = bench.source("good.ndjson", rows_of(2, 10))
    bad = bench.source("bad.ndjson", json.dumps(rows_of(1, 20)[0]) + "\n{not json\n")
    with pytest.raises(InvalidArgument):
        bench.warehouse.load(table, SIMPLE, [good, bad], disposition)
    assert by_uid(bench.warehouse.query_rows(table)) == rows_of(3)
    assert bench.warehouse.row_count(table) == 3


def test_a_failed_load_creates_no_table(bench: Bench, request: pytest.FixtureRequest) -> None:
    bench.emulator_gap(request, "a load job creates its table before reading the sources")
    table = bench.table()
    bad = bench.source("bad.ndjson", "{not json\n")
    with pytest.raises(InvalidArgument):
        bench.warehouse.load(table, SIMPLE, [bad], EMPTY)
    assert bench.warehouse.row_count(table) is None


@pytest.mark.parametrize(
    "line",
    [
        '{"SOPInstanceUID": "1", "Rows": "many"}',
        '{"SOPInstanceUID": "1", "Rows": {"n": 1}}',
        "[1, 2]",
    ],
    ids=["text-in-integer", "object-in-integer", "not-an-object"],
)
def test_a_value_of_the_wrong_shape_fails_the_load(bench: Bench, line: str) -> None:
    with pytest.raises(InvalidArgument):
        bench.warehouse.load(bench.table(), SIMPLE, [bench.source("a.ndjson", line + "\n")], EMPTY)


def test_an_array_in_a_scalar_field_fails_the_load(
    bench: Bench, request: pytest.FixtureRequest
) -> None:
    bench.emulator_gap(request, "an array in a STRING field is loaded as its JSON text")
    source = bench.source("a.ndjson", '{"SOPInstanceUID": ["1"]}\n')
    with pytest.raises(InvalidArgument):
        bench.warehouse.load(bench.table(), SIMPLE, [source], EMPTY)


def test_a_bad_date_fails_the_load(bench: Bench) -> None:
    schema: Schema = [{"name": "StudyDate", "type": "DATE"}]
    source = bench.source("a.ndjson", '{"StudyDate": "2024-13-01"}\n')
    with pytest.raises(InvalidArgument):
        bench.warehouse.load(bench.table(), schema, [source], EMPTY)


def test_an_unknown_field_fails_the_load(bench: Bench, request: pytest.FixtureRequest) -> None:
    bench.emulator_gap(request, "fields missing from the schema are silently ignored")
    source = bench.source("a.ndjson", '{"SOPInstanceUID": "1", "Surprise": 1}\n')
    with pytest.raises(InvalidArgument, match="Surprise"):
        bench.warehouse.load(bench.table(), SIMPLE, [source], EMPTY)


@pytest.mark.parametrize(
    "schema",
    [
        [],
        [{"type": "STRING"}],
        [{"name": "a b", "type": "STRING"}],
        [{"name": "1st", "type": "STRING"}],
        [{"name": "A", "type": "NUMERIC"}],
        [{"name": "A", "type": "STRING", "mode": "REQUIRED"}],
        [{"name": "R", "type": "RECORD"}],
        [{"name": "A", "type": "STRING", "fields": [{"name": "B", "type": "STRING"}]}],
        [{"name": "A", "type": "STRING"}, {"name": "a", "type": "INTEGER"}],
    ],
    ids=[
        "empty",
        "no-name",
        "space",
        "digit-first",
        "unsupported-type",
        "required",
        "empty-record",
        "scalar-with-fields",
        "duplicate",
    ],
)
def test_a_bad_schema_is_invalid(bench: Bench, schema: Schema) -> None:
    table = bench.table()
    with pytest.raises(InvalidArgument):
        bench.warehouse.load(table, schema, [bench.source("a.ndjson", "")], EMPTY)
    assert bench.warehouse.row_count(table) is None


@pytest.mark.parametrize(
    "uri",
    [
        "http://bucket/a.ndjson",
        "/etc/passwd",
        "gs://bucket",
        "gs://bucket/",
        "gs://Bucket/a.ndjson",
        "gs://bucket/../a.ndjson",
        "gs://bucket/x/../../a.ndjson",
        "gs://bucket/a//b.ndjson",
        "gs://bucket/*/*.ndjson",
    ],
)
def test_a_bad_source_uri_is_invalid(bench: Bench, uri: str) -> None:
    with pytest.raises(InvalidArgument):
        bench.warehouse.load(bench.table(), SIMPLE, [uri], EMPTY)


def test_no_sources_is_invalid(bench: Bench) -> None:
    with pytest.raises(InvalidArgument):
        bench.warehouse.load(bench.table(), SIMPLE, [], EMPTY)


def test_a_missing_source_object(bench: Bench) -> None:
    # BigQuery answers 404 (NotFound); bqemulator answers 400, which the adapter maps faithfully.
    expected = NotFound if bench.backend == "local" else InvalidArgument
    with pytest.raises(expected):
        bench.warehouse.load(bench.table(), SIMPLE, [f"gs://{bench.bucket}/absent"], EMPTY)


def test_a_missing_dataset(bench: Bench) -> None:
    table = TableRef(bench.project, f"absent_{uuid.uuid4().hex[:8]}", "t")
    source = bench.source("a.ndjson", rows_of(1))
    if bench.backend == "gcp":
        # Google's export creates the table but never the dataset.
        with pytest.raises(NotFound, match=table.dataset):
            bench.warehouse.load(table, SIMPLE, [source], EMPTY)
        return
    # Locally a dataset is only a DuckDB schema: it is created with its first table.
    assert bench.warehouse.load(table, SIMPLE, [source], EMPTY) == 1


# --- load jobs with an id: at most once -------------------------------------------------------
def test_a_load_with_a_job_id_is_not_repeated(bench: Bench) -> None:
    table = bench.table()
    job = f"export-{uuid.uuid4().hex}"
    source = bench.source("a.ndjson", rows_of(3))
    assert bench.warehouse.load(table, SIMPLE, [source], APPEND, job_id=job) == 3
    assert bench.warehouse.load(table, SIMPLE, [source], APPEND, job_id=job) == 3
    assert bench.warehouse.row_count(table) == 3
    # Another id loads again: the ledger is per id, not per table.
    bench.warehouse.load(table, SIMPLE, [source], APPEND, job_id=f"{job}-2")
    assert bench.warehouse.row_count(table) == 6


def test_a_repeated_job_id_does_not_trip_write_empty(bench: Bench) -> None:
    # The retry of an export that loaded before must not fail on the rows it put there itself.
    table = bench.table()
    job = f"export-{uuid.uuid4().hex}"
    source = bench.source("a.ndjson", rows_of(2))
    bench.warehouse.load(table, SIMPLE, [source], EMPTY, job_id=job)
    assert bench.warehouse.load(table, SIMPLE, [source], EMPTY, job_id=job) == 2
    assert by_uid(bench.warehouse.query_rows(table)) == rows_of(2)


def test_a_failed_load_with_a_job_id_loads_nothing(bench: Bench) -> None:
    table = bench.table()
    job = f"export-{uuid.uuid4().hex}"
    bench.warehouse.load(table, SIMPLE, [bench.source("a.ndjson", rows_of(1))], EMPTY)
    with pytest.raises(Conflict):
        bench.warehouse.load(
            table, SIMPLE, [bench.source("b.ndjson", rows_of(2, 1))], EMPTY, job_id=job
        )
    assert bench.warehouse.row_count(table) == 1


@pytest.mark.parametrize("job_id", ["", "a b", "a/b", "x" * 1025])
def test_a_bad_job_id_is_invalid(bench: Bench, job_id: str) -> None:
    with pytest.raises(InvalidArgument, match="job id"):
        bench.warehouse.load(
            bench.table(), SIMPLE, [bench.source("a.ndjson", rows_of(1))], EMPTY, job_id=job_id
        )
