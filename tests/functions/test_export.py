"""`:export` to Cloud Storage and BigQuery, embedded ("local") and on the emulators ("gcp").

Embedded mode: gs://BUCKET/OBJECT is DATA_DIR/gcs/BUCKET/OBJECT and bq://P.D.T is table T of
schema D in DATA_DIR/bigquery.duckdb. Cloud mode: fake-gcs-server and bqemulator.
"""

from __future__ import annotations

import dataclasses
import io
import json
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pydicom
import pytest
from flask.testing import FlaskClient

from shared.domain.operations import API_EXPORT, API_EXPORT_BQ, EMPTY_TYPE
from shared.ports.queue import Message
from shared.ports.warehouse import Schema, TableRef, Warehouse, WriteDisposition
from shared.service import export_workers, exports, handlers
from shared.service.context import Services
from tests.conftest import STORE, drain
from tests.dicom_factory import Spec, make_instance
from tests.functions.http_helpers import multipart_body, stow_headers

EXPORT_URL = f"/v1/{STORE}:export"
GCS_RESPONSE = "type.googleapis.com/google.cloud.healthcare.v1.dicom.ExportDicomDataResponse"
# bqemulator's project; BigQuery exports must stay in the store's project, so the BigQuery
# tests use a store of that project.
BQ_PROJECT = "dicomstore-test"
BQ_STORE = f"projects/{BQ_PROJECT}/locations/us/datasets/exports/dicomStores/source"


# --- fixtures --------------------------------------------------------------------------------
@pytest.fixture
def bucket(services: Services) -> str:
    """A fresh, existing destination bucket."""
    name = f"export-{uuid.uuid4().hex[:12]}"
    make_bucket(services, name)
    return name


def make_bucket(services: Services, name: str) -> None:
    if services.settings.backend == "gcp":
        services.objects.client.create_bucket(name)  # type: ignore[attr-defined]
    else:
        (Path(services.settings.data_dir) / "gcs" / name).mkdir(parents=True)


class _StagedThroughEmulator:
    """bqemulator reads load sources from a local folder, not from fake-gcs-server: copy the
    staged objects there first. Everything else is the real BigQuery adapter.

    bqemulator also accepts a second job with an id in use, where BigQuery answers 409 (which
    the adapter turns into "that job's result"): loads are serialised here so that the second
    caller finds the first job, as it would on BigQuery.
    """

    def __init__(self, services: Services, inner: Warehouse, gcs_root: Path) -> None:
        self.services, self.inner, self.gcs_root = services, inner, gcs_root
        self.lock = threading.Lock()

    def row_count(self, table: TableRef) -> int | None:
        return self.inner.row_count(table)

    def query_rows(self, table: TableRef) -> list[dict[str, Any]]:
        return self.inner.query_rows(table)

    def load(
        self,
        table: TableRef,
        schema: Schema,
        sources: list[str],
        disposition: WriteDisposition,
        *,
        job_id: str | None = None,
    ) -> int:
        for uri in sources:
            bucket, _, pattern = uri.removeprefix("gs://").partition("/")
            for info in self.services.objects.list(bucket, pattern.split("*")[0]):
                path = self.gcs_root / bucket / info.name
                path.parent.mkdir(parents=True, exist_ok=True)
                path.write_bytes(self.services.objects.read(bucket, info.name))
        with self.lock:
            return self.inner.load(table, schema, sources, disposition, job_id=job_id)


@pytest.fixture
def warehouse(services: Services, request: pytest.FixtureRequest) -> Iterator[tuple[str, str]]:
    """(project, dataset) of a fresh BigQuery dataset, wired into the services."""
    if services.settings.backend == "gcp":
        from shared.adapters.gcp.bigquery_warehouse import BigQueryWarehouse

        bq = request.getfixturevalue("bigquery_emulator")
        inner = BigQueryWarehouse(bq.client, timeout=60)
        bridged = _StagedThroughEmulator(services, inner, bq.gcs_root)
        services.warehouse_factory = lambda: bridged
        yield bq.project, bq.fresh_dataset()
        return
    yield BQ_PROJECT, f"ds_{uuid.uuid4().hex[:8]}"


@pytest.fixture
def bq_store(client: FlaskClient) -> str:
    response = client.post(
        f"/v1/{BQ_STORE.rsplit('/', 2)[0]}/dicomStores?dicomStoreId=source", json={}
    )
    assert response.status_code == 200, response.data
    return BQ_STORE


# --- helpers ---------------------------------------------------------------------------------
def stow(client: FlaskClient, instances: list[bytes], store: str = STORE) -> None:
    response = client.post(
        f"/v1/{store}/dicomWeb/studies", data=multipart_body(instances), headers=stow_headers()
    )
    assert response.status_code == 200, response.data


def start(client: FlaskClient, body: dict[str, Any], store: str = STORE) -> str:
    response = client.post(f"/v1/{store}:export", json=body)
    assert response.status_code == 200, response.data
    payload = response.get_json()
    assert list(payload) == ["name"]
    return str(payload["name"])


def finished(client: FlaskClient, services: Services, name: str) -> dict[str, Any]:
    drain(services)
    operation: dict[str, Any] = client.get(f"/v1/{name}").get_json()
    assert operation.get("done") is True, operation
    return operation


def run_export(
    client: FlaskClient, services: Services, body: dict[str, Any], store: str = STORE
) -> dict[str, Any]:
    return finished(client, services, start(client, body, store))


def to_gcs(bucket: str, prefix: str = "out", **extra: Any) -> dict[str, Any]:
    destination = {"uriPrefix": f"gs://{bucket}/{prefix}" if prefix else f"gs://{bucket}"}
    return {"gcsDestination": {**destination, **extra}}


def names(services: Services, bucket: str, prefix: str = "") -> list[str]:
    return [info.name for info in services.objects.list(bucket, prefix)]


def series_of(study: str, series: str, count: int, **fields: Any) -> list[Spec]:
    return [
        Spec(study=study, series=series, sop=f"{series}.{n}", instance_number=n, **fields)
        for n in range(1, count + 1)
    ]


def stow_tiny(client: FlaskClient, study: str, count: int, store: str = STORE) -> list[Spec]:
    """`count` 4x4 instances in one series of `study` (enough for several shards)."""
    specs = [
        Spec(study=study, series=f"{study}.1", sop=f"{study}.1.{n}", rows=4, columns=4)
        for n in range(count)
    ]
    stow(client, [make_instance(s) for s in specs], store)
    return specs


def hold(services: Services, monkeypatch: pytest.MonkeyPatch) -> list[Message]:
    """Keep every published message, to be delivered by hand with handlers.dispatch."""
    held: list[Message] = []
    monkeypatch.setattr(services.queue, "publish", held.append)
    return held


# --- Cloud Storage -----------------------------------------------------------------------------
def test_export_as_stored_writes_one_object_per_instance(
    client: FlaskClient, services: Services, bucket: str
) -> None:
    specs = series_of("1.2.3", "1.2.3.1", 3) + series_of("1.2.3", "1.2.3.2", 2)
    data = {spec.sop: make_instance(spec) for spec in specs}
    stow(client, list(data.values()))
    operation = run_export(client, services, to_gcs(bucket, "dest"))
    assert operation["metadata"]["apiMethodName"] == API_EXPORT
    assert operation["metadata"]["counter"] == {"success": "5"}
    assert operation["response"] == {"@type": GCS_RESPONSE}
    expected = sorted(f"dest/{s.study}/{s.series}/{s.sop}.dcm" for s in specs)
    assert names(services, bucket) == expected
    for spec in specs:
        name = f"dest/{spec.study}/{spec.series}/{spec.sop}.dcm"
        assert services.objects.read(bucket, name) == data[spec.sop]  # byte for byte


@pytest.mark.parametrize("prefix", ["", "a/b", "a/b/"])
def test_uri_prefix_gets_its_slash(
    client: FlaskClient, services: Services, bucket: str, prefix: str
) -> None:
    spec = Spec(study="1.2.4", series="1.2.4.1", sop="1.2.4.1.1")
    stow(client, [make_instance(spec)])
    run_export(client, services, to_gcs(bucket, prefix))
    folder = prefix.rstrip("/") + "/" if prefix else ""
    assert names(services, bucket) == [f"{folder}1.2.4/1.2.4.1/1.2.4.1.1.dcm"]


def test_multi_frame_png_writes_one_object_per_frame(
    client: FlaskClient, services: Services, bucket: str
) -> None:
    multi = Spec(study="1.2.5", series="1.2.5.1", sop="1.2.5.1.1", frames=3, rows=8, columns=8)
    single = Spec(study="1.2.5", series="1.2.5.1", sop="1.2.5.1.2", rows=8, columns=8)
    stow(client, [make_instance(multi), make_instance(single)])
    operation = run_export(client, services, to_gcs(bucket, "png", mimeType="image/png"))
    assert operation["metadata"]["counter"] == {"success": "2"}
    assert names(services, bucket) == [
        "png/1.2.5/1.2.5.1/1.2.5.1.1/1.png",
        "png/1.2.5/1.2.5.1/1.2.5.1.1/2.png",
        "png/1.2.5/1.2.5.1/1.2.5.1.1/3.png",
        "png/1.2.5/1.2.5.1/1.2.5.1.2.png",
    ]
    from PIL import Image

    with Image.open(io.BytesIO(services.objects.read(bucket, names(services, bucket)[0]))) as im:
        assert im.size == (8, 8)


def test_transcoding_to_explicit_little_endian(
    client: FlaskClient, services: Services, bucket: str
) -> None:
    spec = Spec(study="1.2.6", series="1.2.6.1", sop="1.2.6.1.1")
    stow(client, [make_instance(spec)])
    mime = "application/dicom; transfer-syntax=1.2.840.10008.1.2"
    run_export(client, services, to_gcs(bucket, "", mimeType=mime))
    data = services.objects.read(bucket, "1.2.6/1.2.6.1/1.2.6.1.1.dcm")
    dataset = pydicom.dcmread(io.BytesIO(data))
    assert dataset.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2"
    assert dataset.SOPInstanceUID == "1.2.6.1.1"


def test_existing_objects_are_overwritten(
    client: FlaskClient, services: Services, bucket: str
) -> None:
    spec = Spec(study="1.2.7", series="1.2.7.1", sop="1.2.7.1.1")
    stow(client, [make_instance(spec)])
    services.objects.write(bucket, "1.2.7/1.2.7.1/1.2.7.1.1.dcm", b"stale")
    run_export(client, services, to_gcs(bucket, ""))
    assert services.objects.read(bucket, "1.2.7/1.2.7.1/1.2.7.1.1.dcm") == make_instance(spec)


def test_an_instance_that_cannot_be_converted_fails_alone(
    client: FlaskClient, services: Services, bucket: str
) -> None:
    image = Spec(study="1.2.8", series="1.2.8.1", sop="1.2.8.1.1")
    dataset = pydicom.dcmread(io.BytesIO(make_instance(image)))
    del dataset.PixelData  # no pixels: nothing to put in a PNG
    dataset.SOPInstanceUID = dataset.file_meta.MediaStorageSOPInstanceUID = "1.2.8.1.2"
    buffer = io.BytesIO()
    dataset.save_as(buffer, enforce_file_format=True)
    stow(client, [make_instance(image), buffer.getvalue()])
    operation = run_export(client, services, to_gcs(bucket, "", mimeType="image/png"))
    assert operation["metadata"]["counter"] == {"success": "1", "failure": "1"}
    assert operation["response"] == {"@type": GCS_RESPONSE}  # some succeeded [spec 7, I]
    assert names(services, bucket) == ["1.2.8/1.2.8.1/1.2.8.1.1.png"]


def test_an_empty_store_exports_nothing_and_succeeds(
    client: FlaskClient, services: Services, bucket: str
) -> None:
    operation = run_export(client, services, to_gcs(bucket))
    assert operation["response"] == {"@type": GCS_RESPONSE}
    assert "counter" not in operation["metadata"]
    assert names(services, bucket) == []


# --- the filter file --------------------------------------------------------------------------
def test_filter_file_selects_studies_series_and_instances(
    client: FlaskClient, services: Services, bucket: str
) -> None:
    whole = series_of("1.3.1", "1.3.1.1", 2) + series_of("1.3.1", "1.3.1.2", 1)
    one_series = series_of("1.3.2", "1.3.2.1", 2) + series_of("1.3.2", "1.3.2.2", 2)
    one_instance = series_of("1.3.3", "1.3.3.1", 3)
    skipped = series_of("1.3.4", "1.3.4.1", 2)
    stow(client, [make_instance(s) for s in whole + one_series + one_instance + skipped])
    lines = [
        "/studies/1.3.1",
        "",
        "/studies/1.3.2/series/1.3.2.2",
        "/studies/1.3.3/series/1.3.3.1/instances/1.3.3.1.2",
    ]
    services.objects.write(bucket, "filters/f.txt", "\r\n".join(lines).encode() + b"\r\n")
    filter_config = {"resourcePathsGcsUri": f"gs://{bucket}/filters/f.txt"}
    body = {**to_gcs(bucket, "sel"), "filterConfig": filter_config}
    operation = run_export(client, services, body)
    assert operation["metadata"]["counter"] == {"success": "6"}
    selected = whole + one_series[2:] + [one_instance[1]]
    assert names(services, bucket, "sel/") == sorted(
        f"sel/{s.study}/{s.series}/{s.sop}.dcm" for s in selected
    )


def test_filter_paths_that_match_nothing_count_as_failures(
    client: FlaskClient, services: Services, bucket: str
) -> None:
    stow(client, [make_instance(s) for s in series_of("1.3.5", "1.3.5.1", 2)])
    lines = "/studies/1.3.5\n/studies/9.9.9\n/studies/1.3.5/series/1.3.5.1/instances/8.8\n"
    services.objects.write(bucket, "f.txt", lines.encode())
    body = {**to_gcs(bucket, "x"), "filterConfig": {"resourcePathsGcsUri": f"gs://{bucket}/f.txt"}}
    operation = run_export(client, services, body)
    assert operation["metadata"]["counter"] == {"success": "2", "failure": "2"}
    assert operation["response"] == {"@type": GCS_RESPONSE}
    assert len(names(services, bucket, "x/")) == 2


def test_a_malformed_filter_file_fails_before_anything_is_written(
    client: FlaskClient, services: Services, bucket: str
) -> None:
    stow(client, [make_instance(Spec(study="1.3.6", series="1.3.6.1", sop="1.3.6.1.1"))])
    services.objects.write(bucket, "bad.txt", b"/studies/1.3.6\nstudies/1.3.6/series\n")
    body = {
        **to_gcs(bucket, "y"),
        "filterConfig": {"resourcePathsGcsUri": f"gs://{bucket}/bad.txt"},
    }
    operation = run_export(client, services, body)
    assert operation["error"]["code"] == 3
    assert "line 2" in operation["error"]["message"]
    assert names(services, bucket, "y/") == []


def test_parse_filter_rules() -> None:
    selection = exports.parse_filter(
        "/studies/1.2\r\n/studies/1.3/series/1.4/\n\n/studies/1.5/series/1.6/instances/1.7",
        "gs://b/f",
    )
    assert selection.studies == {"1.2"}
    assert selection.series == {("1.3", "1.4")}
    assert selection.instances == {("1.5", "1.6", "1.7")}
    for text in ("", "\n\n", "/studies/", "/series/1.2", "/studies/1.2/instances/1.3", "x"):
        with pytest.raises(Exception, match="filter file gs://b/f"):
            exports.parse_filter(text, "gs://b/f")


# --- request validation --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "exactly one of"),
        (
            {"gcsDestination": {"uriPrefix": "gs://b/x"}, "bigqueryDestination": {}},
            "exactly one of",
        ),
        ({"gcsDestination": {"uriPrefix": "gs://b/x"}, "extra": 1}, "unknown field 'extra'"),
        ({"gcsDestination": {}}, "uriPrefix is required"),
        ({"gcsDestination": {"uriPrefix": "s3://b/x"}}, "uriPrefix is required"),
        ({"gcsDestination": {"uriPrefix": "gs://B!/x"}}, "bucket"),
        ({"gcsDestination": {"uriPrefix": "gs://bucket/../x"}}, "object name"),
        (
            {"gcsDestination": {"uriPrefix": "gs://bucket/x", "mimeType": "text/plain"}},
            "text/plain",
        ),
        ({"gcsDestination": {"uriPrefix": "gs://bucket/x", "colour": 1}}, "'colour'"),
        (
            {"gcsDestination": {"uriPrefix": "gs://bucket/x"}, "filterConfig": {"x": 1}},
            "unknown field 'x'",
        ),
        (
            {
                "gcsDestination": {"uriPrefix": "gs://bucket/x"},
                "filterConfig": {"resourcePathsGcsUri": "gs://bucket/*.txt"},
            },
            "wildcards",
        ),
        ({"bigqueryDestination": {}}, "tableUri is required"),
        ({"bigqueryDestination": {"tableUri": "bq://p.d"}}, "bq://PROJECT.DATASET.TABLE"),
        ({"bigqueryDestination": {"tableUri": "bq://other.d.t"}}, "project of the DICOM store"),
        (
            {"bigqueryDestination": {"tableUri": "bq://local.d.t", "writeDisposition": "X"}},
            "unknown writeDisposition",
        ),
        ({"bigqueryDestination": {"tableUri": "bq://local.d.t", "force": "yes"}}, "force"),
        (
            {
                "bigqueryDestination": {
                    "tableUri": "bq://local.d.t",
                    "schemaJson": {},
                    "schemaFlattened": {},
                }
            },
            "at most one",
        ),
    ],
)
def test_invalid_requests_are_400(client: FlaskClient, body: dict[str, Any], message: str) -> None:
    response = client.post(EXPORT_URL, json=body)
    assert response.status_code == 400, response.data
    assert message in response.get_json()["error"]["message"]


def test_missing_bucket_and_filter_file_are_400(
    client: FlaskClient, services: Services, bucket: str
) -> None:
    response = client.post(EXPORT_URL, json=to_gcs(f"absent-{uuid.uuid4().hex[:8]}"))
    assert response.status_code == 400
    assert "does not exist" in response.get_json()["error"]["message"]
    body = {**to_gcs(bucket), "filterConfig": {"resourcePathsGcsUri": f"gs://{bucket}/none.txt"}}
    response = client.post(EXPORT_URL, json=body)
    assert response.status_code == 400
    assert "filter file" in response.get_json()["error"]["message"]


def test_export_method_and_store_checks(client: FlaskClient) -> None:
    assert client.get(EXPORT_URL).status_code == 405
    missing = STORE.rsplit("/", 1)[0] + "/absent:export"
    assert client.post(f"/v1/{missing}", json=to_gcs("bucket")).status_code == 404


# --- guarantees: redelivery, crash and retry, cancel ---------------------------------------------
def test_every_message_delivered_twice_counts_once(
    client: FlaskClient, services: Services, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stow_tiny(client, "1.4.1", 230)
    publish = services.queue.publish

    def twice(message: Message) -> None:
        publish(message)
        publish(message)

    monkeypatch.setattr(services.queue, "publish", twice)
    operation = run_export(client, services, to_gcs(bucket, "twice"))
    assert operation["metadata"]["counter"] == {"success": "230"}
    assert len(names(services, bucket, "twice/")) == 230
    assert services.operations.get(operation["name"]).shards_done == 3


def test_a_shard_that_crashes_is_retried_and_completes(
    client: FlaskClient, services: Services, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    specs = series_of("1.4.2", "1.4.2.1", 3)
    stow(client, [make_instance(s) for s in specs])
    held = hold(services, monkeypatch)  # deliver by hand
    name = start(client, to_gcs(bucket, "crash"))
    handlers.dispatch(services, held.pop(0))  # the plan
    shard = held.pop(0)
    write = services.objects.write
    calls = 0

    def crash_on_second(*args: Any, **kwargs: Any) -> Any:
        nonlocal calls
        calls += 1
        if calls == 2:
            raise RuntimeError("worker killed")
        return write(*args, **kwargs)

    monkeypatch.setattr(services.objects, "write", crash_on_second)
    with pytest.raises(RuntimeError):
        handlers.dispatch(services, shard)
    assert client.get(f"/v1/{name}").get_json().get("done") is None
    handlers.dispatch(services, shard)  # the redelivery
    operation = client.get(f"/v1/{name}").get_json()
    assert operation["done"] is True
    assert operation["metadata"]["counter"] == {"success": "3"}
    assert len(names(services, bucket, "crash/")) == 3


def test_cancel_stops_the_remaining_shards(
    client: FlaskClient, services: Services, bucket: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    stow_tiny(client, "1.4.3", 250)
    held = hold(services, monkeypatch)
    name = start(client, to_gcs(bucket, "c"))
    handlers.dispatch(services, held.pop(0))
    assert [m.type for m in held] == [exports.EXPORT_GCS_TASK] * 3
    handlers.dispatch(services, held.pop(0))
    running = client.get(f"/v1/{name}").get_json()
    assert running["metadata"]["counter"] == {"success": "100", "pending": "150"}
    assert client.post(f"/v1/{name}:cancel").status_code == 200
    for message in held:
        handlers.dispatch(services, message)
    operation = client.get(f"/v1/{name}").get_json()
    assert operation["error"]["code"] == 1
    assert operation["metadata"]["counter"] == {"success": "100"}
    assert len(names(services, bucket, "c/")) == 100


# --- BigQuery -------------------------------------------------------------------------------------
def to_bq(project: str, dataset: str, table: str = "instances", **extra: Any) -> dict[str, Any]:
    return {"bigqueryDestination": {"tableUri": f"bq://{project}.{dataset}.{table}", **extra}}


def test_export_to_bigquery_creates_the_table(
    client: FlaskClient, services: Services, warehouse: tuple[str, str], bq_store: str
) -> None:
    project, dataset = warehouse
    specs = series_of("1.5.1", "1.5.1.1", 3, patient_name="Doe^Jane")
    stow(client, [make_instance(s) for s in specs], bq_store)
    operation = run_export(client, services, to_bq(project, dataset), bq_store)
    assert operation["metadata"]["apiMethodName"] == API_EXPORT_BQ
    assert operation["metadata"]["counter"] == {"success": "3"}
    assert operation["response"] == {"@type": EMPTY_TYPE}
    rows = services.warehouse.query_rows(TableRef(project, dataset, "instances"))
    assert sorted(row["SOPInstanceUID"] for row in rows) == sorted(s.sop for s in specs)
    row = rows[0]
    assert row["PatientName"]["Alphabetic"]["FamilyName"] == "Doe"
    assert row["ImageType"] == ["ORIGINAL", "PRIMARY", "AXIAL"]
    assert str(row["StudyDate"]) == "2024-01-15"
    assert row["StorageClass"] == "STANDARD"
    assert row["BlobStorageSize"] > 0
    assert "SourceDicomStore" not in row
    # The staged rows are removed once loaded.
    settings = services.settings
    assert names(services, settings.export_staging_bucket, settings.export_staging_prefix) == []


def test_write_dispositions(
    client: FlaskClient, services: Services, warehouse: tuple[str, str], bq_store: str
) -> None:
    project, dataset = warehouse
    table = TableRef(project, dataset, "disp")
    stow(client, [make_instance(s) for s in series_of("1.5.2", "1.5.2.1", 2)], bq_store)
    body = to_bq(project, dataset, "disp", writeDisposition="WRITE_EMPTY")
    run_export(client, services, body, bq_store)
    assert services.warehouse.row_count(table) == 2
    # WRITE_EMPTY into rows: refused with the request, nothing changes.
    response = client.post(f"/v1/{bq_store}:export", json=body)
    assert response.status_code == 409
    assert "not empty" in response.get_json()["error"]["message"]
    append = to_bq(project, dataset, "disp", writeDisposition="WRITE_APPEND")
    run_export(client, services, append, bq_store)
    assert services.warehouse.row_count(table) == 4
    truncate = to_bq(project, dataset, "disp", writeDisposition="WRITE_TRUNCATE")
    run_export(client, services, truncate, bq_store)
    assert services.warehouse.row_count(table) == 2


def test_legacy_force(
    client: FlaskClient, services: Services, warehouse: tuple[str, str], bq_store: str
) -> None:
    project, dataset = warehouse
    table = TableRef(project, dataset, "forced")
    stow(client, [make_instance(s) for s in series_of("1.5.3", "1.5.3.1", 2)], bq_store)
    run_export(client, services, to_bq(project, dataset, "forced", force=False), bq_store)
    # force=false: an existing table is an error, even though WRITE_EMPTY would allow it empty.
    response = client.post(
        f"/v1/{bq_store}:export", json=to_bq(project, dataset, "forced", force=False)
    )
    assert response.status_code == 409
    run_export(client, services, to_bq(project, dataset, "forced", force=True), bq_store)
    assert services.warehouse.row_count(table) == 2
    # writeDisposition set: force is ignored.
    body = to_bq(project, dataset, "forced", force=True, writeDisposition="WRITE_APPEND")
    run_export(client, services, body, bq_store)
    assert services.warehouse.row_count(table) == 4


def test_include_source_store_and_filter(
    client: FlaskClient,
    services: Services,
    warehouse: tuple[str, str],
    bq_store: str,
    bucket: str,
) -> None:
    project, dataset = warehouse
    stow(client, [make_instance(s) for s in series_of("1.5.4", "1.5.4.1", 2)], bq_store)
    stow(client, [make_instance(s) for s in series_of("1.5.5", "1.5.5.1", 2)], bq_store)
    services.objects.write(bucket, "only.txt", b"/studies/1.5.5\n")
    body = {
        **to_bq(project, dataset, "src", includeSourceStore=True),
        "filterConfig": {"resourcePathsGcsUri": f"gs://{bucket}/only.txt"},
    }
    operation = run_export(client, services, body, bq_store)
    assert operation["metadata"]["counter"] == {"success": "2"}
    rows = services.warehouse.query_rows(TableRef(project, dataset, "src"))
    assert {row["StudyInstanceUID"] for row in rows} == {"1.5.5"}
    assert {row["SourceDicomStore"] for row in rows} == {bq_store}


def test_bigquery_shards_delivered_twice_load_once(
    client: FlaskClient,
    services: Services,
    warehouse: tuple[str, str],
    bq_store: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project, dataset = warehouse
    stow_tiny(client, "1.5.6", 150, bq_store)
    sent: list[Message] = []
    publish = services.queue.publish

    def twice(message: Message) -> None:
        sent.append(message)
        publish(message)
        publish(message)

    monkeypatch.setattr(services.queue, "publish", twice)
    body = to_bq(project, dataset, "twice", writeDisposition="WRITE_APPEND")
    operation = run_export(client, services, body, bq_store)
    assert operation["metadata"]["counter"] == {"success": "150"}
    # And once more after the end, as a late redelivery would.
    for message in sent:
        handlers.dispatch(services, message)
    drain(services)
    assert services.warehouse.row_count(TableRef(project, dataset, "twice")) == 150


def staged_before_load(
    client: FlaskClient, services: Services, monkeypatch: pytest.MonkeyPatch, body: dict[str, Any]
) -> tuple[str, list[Message]]:
    """Start a one-shard export to BigQuery into BQ_STORE and deliver all but its load task."""
    held = hold(services, monkeypatch)  # deliver by hand
    name = start(client, body, BQ_STORE)
    handlers.dispatch(services, held.pop(0))  # the plan
    handlers.dispatch(services, held.pop(0))  # the one shard
    assert [m.type for m in held] == [exports.EXPORT_LOAD_TASK]
    return name, held


def test_a_failed_load_ends_the_operation_with_its_error(
    client: FlaskClient,
    services: Services,
    warehouse: tuple[str, str],
    bq_store: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project, dataset = warehouse
    table = TableRef(project, dataset, "race")
    stow(client, [make_instance(s) for s in series_of("1.5.7", "1.5.7.1", 1)], bq_store)
    name, held = staged_before_load(client, services, monkeypatch, to_bq(project, dataset, "race"))
    # Someone fills the table between the request and the load: WRITE_EMPTY must fail.
    bucket = services.settings.export_staging_bucket
    services.objects.write(bucket, "other/rows.ndjson", b'{"SOPInstanceUID": "9.9"}\n')
    services.warehouse.load(
        table,
        [{"name": "SOPInstanceUID", "type": "STRING"}],
        [f"gs://{bucket}/other/rows.ndjson"],
        WriteDisposition.WRITE_APPEND,
    )
    handlers.dispatch(services, held.pop(0))
    operation = client.get(f"/v1/{name}").get_json()
    assert operation["done"] is True
    assert "not empty" in operation["error"]["message"]
    assert services.warehouse.row_count(table) == 1
    assert names(services, bucket, services.settings.export_staging_prefix) == []


def test_rows_are_staged_under_the_configured_prefix(
    client: FlaskClient,
    services: Services,
    warehouse: tuple[str, str],
    bq_store: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Terraform passes the prefix its bucket lifecycle rule clears, so rows of an export that
    # never reaches its load do not stay forever.
    project, dataset = warehouse
    settings = dataclasses.replace(services.settings, export_staging_prefix="tmp/exports/")
    monkeypatch.setattr(services, "settings", settings)
    stow(client, [make_instance(s) for s in series_of("1.5.8", "1.5.8.1", 2)], bq_store)
    body = to_bq(project, dataset, "prefixed")
    name, held = staged_before_load(client, services, monkeypatch, body)
    operation_id = name.rsplit("/", 1)[-1]
    staged = names(services, settings.export_staging_bucket, "tmp/exports/")
    assert staged and all(n.startswith(f"tmp/exports/{operation_id}/") for n in staged)
    assert names(services, settings.export_staging_bucket, "export-staging/") == []
    handlers.dispatch(services, held.pop(0))  # the load
    assert finished(client, services, name)["done"] is True
    assert services.warehouse.row_count(TableRef(project, dataset, "prefixed")) == 2
    assert names(services, settings.export_staging_bucket, "tmp/exports/") == []


def test_shard_schemas_that_disagree_are_unified_before_the_load(
    client: FlaskClient,
    services: Services,
    warehouse: tuple[str, str],
    bq_store: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project, dataset = warehouse
    stow_tiny(client, "1.5.8", 101, bq_store)
    held = hold(services, monkeypatch)
    name = start(client, to_bq(project, dataset, "mixed"), bq_store)
    for _ in range(3):  # the plan and its two shards
        handlers.dispatch(services, held.pop(0))
    # One shard saw Rows as multi-valued (as an element of another VM would be): the union
    # makes it REPEATED, and the other shard's scalar values must become lists.
    bucket, folder = export_workers.staging(services, {"operation": name})
    schema = json.loads(services.objects.read(bucket, f"{folder}schema-00000001.json"))
    for field in schema:
        if field["name"] == "Rows":
            field["mode"] = "REPEATED"
    services.objects.write(bucket, f"{folder}schema-00000001.json", json.dumps(schema).encode())
    lines = services.objects.read(bucket, f"{folder}rows-00000001.ndjson").splitlines()
    rows = [{**json.loads(line), "Rows": [4]} for line in lines]
    text = "".join(json.dumps(row) + "\n" for row in rows)
    services.objects.write(bucket, f"{folder}rows-00000001.ndjson", text.encode())
    handlers.dispatch(services, held.pop(0))  # the load
    operation = client.get(f"/v1/{name}").get_json()
    assert operation["response"] == {"@type": EMPTY_TYPE}, operation
    loaded = services.warehouse.query_rows(TableRef(project, dataset, "mixed"))
    assert len(loaded) == 101
    assert [row["Rows"] for row in loaded] == [[4]] * 101


def test_a_cancelled_bigquery_export_loads_nothing_and_leaves_no_staging(
    client: FlaskClient,
    services: Services,
    warehouse: tuple[str, str],
    bq_store: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    project, dataset = warehouse
    stow_tiny(client, "1.5.9", 150, bq_store)
    held = hold(services, monkeypatch)
    name = start(client, to_bq(project, dataset, "cancelled"), bq_store)
    handlers.dispatch(services, held.pop(0))  # the plan
    handlers.dispatch(services, held.pop(0))  # the first shard stages its rows
    bucket, folder = export_workers.staging(services, {"operation": name})
    assert names(services, bucket, folder)
    assert client.post(f"/v1/{name}:cancel").status_code == 200
    while held:
        handlers.dispatch(services, held.pop(0))
    operation = client.get(f"/v1/{name}").get_json()
    assert operation["error"]["code"] == 1
    assert services.warehouse.row_count(TableRef(project, dataset, "cancelled")) is None
    assert names(services, bucket, folder) == []
