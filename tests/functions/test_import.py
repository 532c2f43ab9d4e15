"""Import from Cloud Storage, embedded ("local") and on the emulators ("gcp"): the `:import`
operation, the storage trigger and (embedded only) the inbox watcher.

Embedded mode: gs://BUCKET/OBJECT is DATA_DIR/gcs/BUCKET/OBJECT. Cloud mode: fake-gcs-server,
where every test takes fresh buckets.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from shared import bootstrap
from shared.adapters.local.dir_objects import DirObjectStorage
from shared.config import Settings
from shared.domain.identifiers import StoreName
from shared.errors import NotFound, Unavailable
from shared.ports.objects import ObjectStorage
from shared.ports.queue import Message
from shared.service import fanout, handlers, imports, stores
from shared.service.context import Services
from shared.service.imports import EventOutcome
from shared.service.watch import InboxWatcher
from tests.conftest import DW, STORE, _cloud_settings, drain, make_settings
from tests.dicom_factory import Spec, make_instance
from tests.functions.http_helpers import multipart_body, stow_headers
from tests.functions.operation_helpers import WorkerDeath, deliver_twice, record_finishes

BUCKET = "imports"  # the embedded buckets' names; on fake-gcs-server every test takes fresh ones
INGEST = "ingest"
IMPORT_URL = f"/v1/{STORE}:import"
RESPONSE_TYPE = "type.googleapis.com/google.cloud.healthcare.v1.dicom.ImportDicomDataResponse"


# --- fixtures --------------------------------------------------------------------------------
@dataclass
class Buckets:
    """The gs:// object storage of the services, with a source bucket and an ingest bucket."""

    objects: ObjectStorage
    source: str
    ingest: str

    def put(self, name: str, data: bytes, bucket: str | None = None) -> None:
        self.objects.write(bucket or self.source, name, data)

    def uri(self, pattern: str) -> str:
        return f"gs://{self.source}/{pattern}"

    def inbox_root(self) -> Path:
        """The embedded gs:// folder, which the inbox watcher watches."""
        assert isinstance(self.objects, DirObjectStorage)
        return self.objects.root


def _wire(services: Services, request: pytest.FixtureRequest) -> Buckets:
    if services.settings.backend == "gcp":
        emulator = request.getfixturevalue("gcs_emulator")
        return Buckets(services.objects, emulator.fresh_bucket(), emulator.fresh_bucket())
    root = Path(services.settings.data_dir).resolve() / "gcs"
    for bucket in (BUCKET, INGEST):
        (root / bucket).mkdir(parents=True, exist_ok=True)
    return Buckets(services.objects, BUCKET, INGEST)


@pytest.fixture
def gcs(services: Services, request: pytest.FixtureRequest) -> Buckets:
    return _wire(services, request)


# --- helpers -----------------------------------------------------------------------------------


def small(**fields: Any) -> bytes:
    return make_instance(Spec(rows=4, columns=4, **fields))


def start(client: FlaskClient, uri: str, **extra: Any) -> str:
    response = client.post(IMPORT_URL, json={"gcsSource": {"uri": uri}, **extra})
    assert response.status_code == 200, response.data
    body = response.get_json()
    assert list(body) == ["name"]
    assert body["name"].startswith("projects/local/locations/local/datasets/default/operations/")
    return str(body["name"])


def finished(client: FlaskClient, services: Services, name: str) -> dict[str, Any]:
    drain(services)
    operation: dict[str, Any] = client.get(f"/v1/{name}").get_json()
    assert operation["done"] is True, operation
    return operation


def run_import(client: FlaskClient, services: Services, uri: str, **extra: Any) -> dict[str, Any]:
    return finished(client, services, start(client, uri, **extra))


def instance_count(client: FlaskClient) -> int:
    metrics = client.get(f"/v1/{STORE}:getDICOMStoreMetrics").get_json()
    return int(metrics.get("instanceCount", "0"))


def sample_errors(services: Services, name: str) -> list[dict[str, Any]]:
    return list(services.operations.sample_errors(name))


@pytest.fixture
def tree(gcs: Buckets) -> dict[str, bytes]:
    files = {
        "dir/a1.dcm": small(),
        "dir/a2.dcm": small(),
        "dir/a10.dcm": small(),
        "dir/sub/b.dcm": small(),
        "dir/sub/deeper/c.dcm": small(),
        "dir/notes.txt": b"not DICOM at all",
        "other/d.dcm": small(),
    }
    for name, data in files.items():
        gcs.put(name, data)
    return files


# --- the operation ---------------------------------------------------------------------------
def test_star_stays_in_one_folder(
    client: FlaskClient, services: Services, gcs: Buckets, tree: object
) -> None:
    operation = run_import(client, services, gcs.uri("dir/*.dcm"))
    metadata = operation["metadata"]
    assert metadata["@type"] == "type.googleapis.com/google.cloud.healthcare.v1.OperationMetadata"
    assert metadata["apiMethodName"] == (
        "google.cloud.healthcare.v1.dicom.DicomService.ImportDicomData"
    )
    assert metadata["counter"] == {"success": "3"}
    assert metadata["createTime"] <= metadata["endTime"]
    # Cloud Logging only exists in cloud mode
    assert ("logsUrl" in metadata) == (services.settings.backend == "gcp")
    assert operation["response"] == {"@type": RESPONSE_TYPE}
    assert "error" not in operation
    assert instance_count(client) == 3


@pytest.mark.parametrize(
    ("pattern", "success", "failure"),
    [
        ("dir/**", 5, 1),  # notes.txt is not DICOM: a failure, the rest imports
        ("dir/**.dcm", 5, 0),
        ("**.dcm", 6, 0),
        ("**", 6, 1),
        ("dir/a?.dcm", 2, 0),
        ("dir/a??.dcm", 1, 0),
        ("dir/*/b.dcm", 1, 0),
        ("dir/sub/deeper/c.dcm", 1, 0),  # no wildcard: that one object
    ],
)
def test_wildcards(
    client: FlaskClient,
    services: Services,
    gcs: Buckets,
    tree: object,
    pattern: str,
    success: int,
    failure: int,
) -> None:
    operation = run_import(client, services, gcs.uri(pattern))
    counter = {"success": str(success)} | ({"failure": str(failure)} if failure else {})
    assert operation["metadata"]["counter"] == counter
    assert operation["response"] == {"@type": RESPONSE_TYPE}
    assert instance_count(client) == success


@pytest.mark.parametrize(
    "pattern",
    ["nothing/*.dcm", "dir", "dir/"],  # a folder is not an object
)
def test_no_match_ends_with_not_found(
    client: FlaskClient, services: Services, gcs: Buckets, tree: object, pattern: str
) -> None:
    operation = run_import(client, services, gcs.uri(pattern))
    assert_not_found(operation, f"no object matches {gcs.uri(pattern)}")


def test_missing_bucket_ends_with_not_found(
    client: FlaskClient, services: Services, gcs: Buckets
) -> None:
    bucket = f"absent-{uuid.uuid4().hex[:12]}"
    operation = run_import(client, services, f"gs://{bucket}/x/**")
    assert_not_found(operation, f"bucket {bucket} not found")


def assert_not_found(operation: dict[str, Any], message: str) -> None:
    assert operation["error"]["code"] == 5
    assert message in operation["error"]["message"]
    assert "response" not in operation
    assert "counter" not in operation["metadata"]


@pytest.mark.parametrize(
    "body",
    [
        None,
        {},
        {"gcsSource": {}},
        {"gcsSource": "gs://imports/x.dcm"},
        {"gcsSource": {"uri": 7}},
        {"gcsSource": {"uri": ""}},
        {"gcsSource": {"uri": "imports/x.dcm"}},
        {"gcsSource": {"uri": "gs://imports"}},
        {"gcsSource": {"uri": "gs://imports/"}},
        {"gcsSource": {"uri": "gs://imports/[ab].dcm"}},
        {"gcsSource": {"uri": "gs://imports/***"}},
        {"gcsSource": {"uri": "gs://imports/**/x.dcm"}},
        {"gcsSource": {"uri": "gs://imports/dir*/**"}},
        {"gcsSource": {"uri": "gs://imp*/x.dcm"}},
        {"gcsSource": {"uri": "gs://Imports/x.dcm"}},
        {"gcsSource": {"uri": "gs://imports/../x.dcm"}},
        {"gcsSource": {"uri": "gs://imports/x.dcm", "other": 1}},
        {"gcsSource": {"uri": "gs://imports/x.dcm"}, "blobStorageSettings": "NEARLINE"},
        {"gcsSource": {"uri": "gs://imports/x.dcm"}, "blobStorageSettings": {"x": 1}},
        {
            "gcsSource": {"uri": "gs://imports/x.dcm"},
            "blobStorageSettings": {"blobStorageClass": "GLACIER"},
        },
        {"gcsSource": {"uri": "gs://imports/x.dcm"}, "unknownField": True},
    ],
)
def test_invalid_requests_are_400(client: FlaskClient, gcs: object, body: Any) -> None:
    response = client.post(IMPORT_URL, json=body) if body is not None else client.post(IMPORT_URL)
    assert response.status_code == 400, response.data
    assert response.get_json()["error"]["status"] == "INVALID_ARGUMENT"
    operations = client.get("/v1/projects/local/locations/local/datasets/default/operations")
    assert operations.get_json()["operations"] == []  # nothing was started


def test_import_method_and_store_checks(client: FlaskClient, gcs: object) -> None:
    assert client.get(IMPORT_URL).status_code == 405
    missing = IMPORT_URL.replace("/dicomStores/default:", "/dicomStores/nope:")
    response = client.post(missing, json={"gcsSource": {"uri": "gs://imports/x.dcm"}})
    assert response.status_code == 404


def test_storage_class_applies_to_imported_instances(
    client: FlaskClient, services: Services, gcs: Buckets
) -> None:
    spec = Spec(rows=4, columns=4)
    gcs.put("x.dcm", make_instance(spec))
    settings = {"blobStorageSettings": {"blobStorageClass": "COLDLINE"}}
    assert run_import(client, services, gcs.uri("x.dcm"), **settings)["response"]
    url = f"{DW}/studies/{spec.study}/series/{spec.series}/instances/{spec.sop}:getStorageInfo"
    assert client.get(url).get_json()["blobStorageInfo"]["storageClass"] == "COLDLINE"


def test_mixed_files_exact_counters_and_errors(
    client: FlaskClient, services: Services, gcs: Buckets
) -> None:
    stored = Spec(rows=4, columns=4)
    body = multipart_body([make_instance(stored)])
    assert client.post(f"{DW}/studies", data=body, headers=stow_headers()).status_code == 200
    conflicting = Spec(
        study=stored.study, series=stored.series, sop=stored.sop, rows=4, columns=4, seed=99
    )
    good = [small() for _ in range(3)]
    files = {
        "mix/01-good.dcm": good[0],
        "mix/02-good.dcm": good[1],
        "mix/03-good.dcm": good[2],
        "mix/04-copy-of-01.dcm": good[0],  # the same file twice in one import: both succeed
        "mix/05-already-stored.dcm": make_instance(stored),  # identical: success, no change
        "mix/06-conflict.dcm": make_instance(conflicting),  # same UIDs, other bytes: failure
        "mix/07-truncated.dcm": good[1][: len(good[1]) // 2],
        "mix/08-text.dcm": b"hello, not DICOM",
        "mix/09-empty.dcm": b"",
    }
    for name, data in files.items():
        gcs.put(name, data)
    name = start(client, gcs.uri("mix/*"))
    operation = finished(client, services, name)
    assert operation["metadata"]["counter"] == {"success": "5", "failure": "4"}
    assert operation["response"] == {"@type": RESPONSE_TYPE}
    assert instance_count(client) == 4
    errors = {e["resource"]: e["error"] for e in sample_errors(services, name)}
    assert sorted(errors) == [
        gcs.uri("mix/06-conflict.dcm"),
        gcs.uri("mix/07-truncated.dcm"),
        gcs.uri("mix/08-text.dcm"),
        gcs.uri("mix/09-empty.dcm"),
    ]
    conflict = errors[gcs.uri("mix/06-conflict.dcm")]
    assert conflict["code"] == 6
    assert "checksum mismatch" in conflict["message"]
    for key in ("07-truncated", "08-text", "09-empty"):
        error = errors[gcs.uri(f"mix/{key}.dcm")]
        assert error["code"] == 3
        assert error["message"].startswith("invalid DICOM")
    # the stored instance was never overwritten by the conflicting file
    url = f"{DW}/studies/{stored.study}/series/{stored.series}/instances/{stored.sop}"
    retrieved = client.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    assert retrieved.data == make_instance(stored)


def test_every_file_failing_ends_with_an_error(
    client: FlaskClient, services: Services, gcs: Buckets
) -> None:
    gcs.put("bad/1.dcm", b"garbage")
    gcs.put("bad/2.dcm", b"\x00" * 300)
    operation = run_import(client, services, gcs.uri("bad/*.dcm"))
    assert operation["metadata"]["counter"] == {"failure": "2"}
    error = operation["error"]
    assert error["code"] == 3
    assert error["message"] == "2 of 2 files failed to import"
    (details,) = error["details"]
    assert details["@type"].endswith("ImportDicomDataErrorDetails")
    resources = sorted(e["resource"] for e in details["sampleErrors"])
    assert resources == [gcs.uri("bad/1.dcm"), gcs.uri("bad/2.dcm")]
    assert all(e["error"]["code"] == 3 for e in details["sampleErrors"])
    assert "response" not in operation


def test_every_shard_delivered_twice_counts_once(
    client: FlaskClient,
    services: Services,
    gcs: Buckets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for number in range(230):  # three shards of at most 100 objects
        gcs.put(f"twice/{number:04d}.dcm", small() if number % 10 else b"junk")
    deliver_twice(services, monkeypatch)
    name = start(client, gcs.uri("twice/**"))
    operation = finished(client, services, name)
    assert operation["metadata"]["counter"] == {"success": "207", "failure": "23"}
    assert operation["response"] == {"@type": RESPONSE_TYPE}
    assert instance_count(client) == 207
    assert services.operations.get(name).shards_done == 3


def test_redelivered_shard_after_the_end_changes_nothing(
    client: FlaskClient,
    services: Services,
    gcs: Buckets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gcs.put("one/a.dcm", small())
    gcs.put("one/b.dcm", b"junk")
    sent: list[Message] = []
    publish = services.queue.publish

    def record(message: Message) -> None:
        sent.append(message)
        publish(message)

    monkeypatch.setattr(services.queue, "publish", record)
    name = start(client, gcs.uri("one/*"))
    before = finished(client, services, name)
    for message in sent:  # the plan and the shard, delivered again
        handlers.dispatch(services, message)
    assert client.get(f"/v1/{name}").get_json() == before
    assert before["metadata"]["counter"] == {"success": "1", "failure": "1"}


def test_a_shard_whose_worker_dies_is_redelivered_and_counts_once(
    client: FlaskClient,
    services: Services,
    gcs: Buckets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(imports, "IMPORT_SHARD_SIZE", 4)
    for number in range(10):  # shards of 4, 4 and 2 objects; 00 and 05 are not DICOM
        gcs.put(f"crash/{number:02d}.dcm", small() if number % 5 else b"junk")
    held: list[Message] = []
    monkeypatch.setattr(services.queue, "publish", held.append)  # deliver by hand
    finishes = record_finishes(services, monkeypatch)
    name = start(client, gcs.uri("crash/*"))
    handlers.dispatch(services, held.pop(0))  # the plan
    first, second, third = held
    # 04 and 06 are stored and 05 fails before the blob write of 07 kills the worker
    death = WorkerDeath(monkeypatch, services.blobs, "put", 3)
    with pytest.raises(RuntimeError, match="worker killed"):
        handlers.dispatch(services, second)
    assert death.happened
    handlers.dispatch(services, first)
    handlers.dispatch(services, third)
    running = client.get(f"/v1/{name}").get_json()
    assert running.get("done") is None
    assert running["metadata"]["counter"] == {"success": "5", "failure": "1", "pending": "4"}
    handlers.dispatch(services, second)  # the redelivery
    operation = client.get(f"/v1/{name}").get_json()
    assert operation["done"] is True
    assert operation["metadata"]["counter"] == {"success": "8", "failure": "2"}
    assert operation["response"] == {"@type": RESPONSE_TYPE}
    handlers.dispatch(services, second)  # once more, after the end
    assert client.get(f"/v1/{name}").get_json() == operation
    assert finishes == [name]
    assert instance_count(client) == 8
    assert len(list(services.blobs.list_keys("stores/"))) == 8  # each instance stored once


def test_cancel_stops_the_remaining_shards(
    client: FlaskClient,
    services: Services,
    gcs: Buckets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for number in range(250):
        gcs.put(f"many/{number:04d}.dcm", small())
    held: list[Message] = []
    monkeypatch.setattr(services.queue, "publish", held.append)  # deliver by hand, in order
    name = start(client, gcs.uri("many/*.dcm"))
    handlers.dispatch(services, held.pop(0))  # the plan: three shard tasks
    assert [m.type for m in held] == [imports.IMPORT_TASK] * 3
    handlers.dispatch(services, held.pop(0))
    running = client.get(f"/v1/{name}").get_json()
    assert running.get("done") is None
    assert running["metadata"]["counter"] == {"success": "100", "pending": "150"}
    assert client.post(f"/v1/{name}:cancel").status_code == 200
    for message in held:
        handlers.dispatch(services, message)
    operation = client.get(f"/v1/{name}").get_json()
    assert operation["done"] is True
    assert operation["error"]["code"] == 1
    assert operation["metadata"]["cancelRequested"] is True
    assert operation["metadata"]["counter"] == {"success": "100"}
    assert instance_count(client) == 100


def test_cancel_before_listing_imports_nothing(
    client: FlaskClient,
    services: Services,
    gcs: Buckets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gcs.put("c/a.dcm", small())
    held: list[Message] = []
    monkeypatch.setattr(services.queue, "publish", held.append)
    name = start(client, gcs.uri("c/*"))
    client.post(f"/v1/{name}:cancel")
    handlers.dispatch(services, held.pop(0))
    assert held == []
    assert instance_count(client) == 0
    assert client.get(f"/v1/{name}").get_json()["error"]["code"] == 1


def test_logs_url_in_cloud_mode() -> None:
    import dataclasses

    name = "projects/p/locations/l/datasets/d/operations/123"
    embedded = Settings()
    assert fanout.logs_url(embedded, name) is None
    cloud = dataclasses.replace(embedded, backend="gcp", gcp_project="my-proj")
    url = fanout.logs_url(cloud, name)
    assert url == (
        "https://console.cloud.google.com/logs/query;query=%22projects%2Fp%2Flocations%2Fl"
        "%2Fdatasets%2Fd%2Foperations%2F123%22?project=my-proj"
    )


@pytest.fixture(params=["local", "gcp"])
def fast_services(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Services]:
    # fsync off: this test is about the import's bookkeeping, not the disk.
    settings = make_settings(tmp_path / "fast", fsync=False)
    if request.param == "gcp":
        settings = _cloud_settings(request, settings)
    built = bootstrap.build_services(settings, start_workers=True)
    yield built
    built.queue.stop()  # type: ignore[attr-defined]


def test_two_thousand_files(fast_services: Services, request: pytest.FixtureRequest) -> None:
    services = fast_services
    gcs = _wire(services, request)
    study = Spec().study
    for number in range(2000):
        spec = Spec(study=study, rows=4, columns=4, instance_number=number)
        data = make_instance(spec) if number % 100 else b"not DICOM"
        gcs.put(f"bulk/{number // 500}/{number:05d}.dcm", data)
    record = stores.get_store(services, StoreName.parse(STORE))
    operation = imports.start_import(services, record, {"gcsSource": {"uri": gcs.uri("bulk/**")}})
    # On the emulators 2,000 files take tens of seconds on a busy machine: wait generously.
    assert services.queue.join(300), "the import did not finish"  # type: ignore[attr-defined]
    done = services.operations.get(operation.name)
    assert done.done and done.error is None
    assert (done.success, done.failure, done.shards_done) == (1980, 20, 20)
    assert services.index.metrics(record.store_id).instance_count == 1980
    assert len(services.operations.sample_errors(operation.name)) == 20


# --- the storage trigger ---------------------------------------------------------------------
def event(services: Services, gcs: Buckets, name: str, after: str = "keep") -> EventOutcome:
    generation = gcs.objects.stat(gcs.ingest, name).generation
    return imports.import_object_event(services, gcs.ingest, name, generation, STORE, after)


def test_trigger_imports_once(client: FlaskClient, services: Services, gcs: Buckets) -> None:
    gcs.put("drop/a.dcm", small(), gcs.ingest)
    assert event(services, gcs, "drop/a.dcm") == EventOutcome.IMPORTED
    assert instance_count(client) == 1
    markers = list(services.blobs.list_keys(imports.MARKER_PREFIX + "/"))
    assert len(markers) == 1
    assert event(services, gcs, "drop/a.dcm") == EventOutcome.DUPLICATE  # redelivered
    assert list(services.blobs.list_keys(imports.MARKER_PREFIX + "/")) == markers
    assert instance_count(client) == 1
    assert gcs.objects.read(gcs.ingest, "drop/a.dcm")  # kept by default


def test_trigger_records_a_poison_file_and_returns(
    client: FlaskClient, services: Services, gcs: Buckets
) -> None:
    gcs.put("drop/bad.dcm", b"garbage that ends in .dcm", gcs.ingest)
    assert event(services, gcs, "drop/bad.dcm", "delete") == EventOutcome.FAILED
    assert event(services, gcs, "drop/bad.dcm", "delete") == EventOutcome.DUPLICATE
    assert gcs.objects.read(gcs.ingest, "drop/bad.dcm")  # a failed file stays for inspection
    (key,) = services.blobs.list_keys(imports.MARKER_PREFIX + "/")
    with services.blobs.open(key) as handle:
        marker = handle.read().decode()
    assert '"outcome": "failed"' in marker and "invalid DICOM" in marker
    assert instance_count(client) == 0


@pytest.mark.parametrize("name", ["drop/readme.txt", "drop/a.dcm.part", "drop/"])
def test_trigger_ignores_other_names(services: Services, gcs: Buckets, name: str) -> None:
    outcome = imports.import_object_event(services, gcs.ingest, name, "1", STORE)
    assert outcome == EventOutcome.IGNORED
    assert list(services.blobs.list_keys(imports.MARKER_PREFIX + "/")) == []


def test_trigger_upper_case_extension_and_new_generation(
    client: FlaskClient, services: Services, gcs: Buckets
) -> None:
    gcs.put("A.DCM", small(), gcs.ingest)
    assert event(services, gcs, "A.DCM") == EventOutcome.IMPORTED
    gcs.put("A.DCM", small(), gcs.ingest)  # overwritten: a new generation is a new import
    assert event(services, gcs, "A.DCM") == EventOutcome.IMPORTED
    assert instance_count(client) == 2


def test_trigger_missing_object(services: Services, gcs: Buckets) -> None:
    outcome = imports.import_object_event(services, gcs.ingest, "gone.dcm", "1", STORE)
    assert outcome == EventOutcome.MISSING


def test_trigger_delete_after_import(client: FlaskClient, services: Services, gcs: Buckets) -> None:
    gcs.put("d/a.dcm", small(), gcs.ingest)
    assert event(services, gcs, "d/a.dcm", "delete") == EventOutcome.IMPORTED
    with pytest.raises(NotFound):
        gcs.objects.stat(gcs.ingest, "d/a.dcm")
    assert instance_count(client) == 1


def test_trigger_move_after_import(client: FlaskClient, services: Services, gcs: Buckets) -> None:
    data = small()
    gcs.put("d/a.dcm", data, gcs.ingest)
    generation = gcs.objects.stat(gcs.ingest, "d/a.dcm").generation
    outcome = imports.import_object_event(
        services, gcs.ingest, "d/a.dcm", generation, STORE, "move:done"
    )
    assert outcome == EventOutcome.IMPORTED
    assert gcs.objects.read(gcs.ingest, "done/d/a.dcm") == data
    with pytest.raises(NotFound):
        gcs.objects.stat(gcs.ingest, "d/a.dcm")
    # the move fires an event of its own, which must not import (or move) again
    moved = gcs.objects.stat(gcs.ingest, "done/d/a.dcm").generation
    outcome = imports.import_object_event(
        services, gcs.ingest, "done/d/a.dcm", moved, STORE, "move:done/"
    )
    assert outcome == EventOutcome.IGNORED
    assert instance_count(client) == 1


def test_trigger_raises_on_backend_errors_so_the_event_is_retried(
    client: FlaskClient,
    services: Services,
    gcs: Buckets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gcs.put("t/a.dcm", small(), gcs.ingest)

    with monkeypatch.context() as patch:
        patch.setattr(services.index, "add_instances", _index_down)
        with pytest.raises(Unavailable):
            event(services, gcs, "t/a.dcm")
    assert list(services.blobs.list_keys(imports.MARKER_PREFIX + "/")) == []
    assert list(services.blobs.list_keys("stores/")) == []  # the attempt's blob is removed
    assert event(services, gcs, "t/a.dcm") == EventOutcome.IMPORTED  # the retry
    assert instance_count(client) == 1


def test_a_poison_event_is_dead_lettered_after_five_attempts(
    client: FlaskClient,
    services: Services,
    gcs: Buckets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gcs.put("p/poison.dcm", small(), gcs.ingest)

    def crash(*_args: object, **_kwargs: object) -> None:
        raise RuntimeError("decoder bug")

    with monkeypatch.context() as patch:
        patch.setattr(imports, "import_object", crash)
        for _ in range(imports.MAX_EVENT_ATTEMPTS - 1):
            with pytest.raises(RuntimeError):
                event(services, gcs, "p/poison.dcm")  # raised: the platform retries
        assert event(services, gcs, "p/poison.dcm") == EventOutcome.DEAD_LETTERED
    # Acknowledged from now on, even though the file itself is fine.
    assert event(services, gcs, "p/poison.dcm") == EventOutcome.DUPLICATE
    assert instance_count(client) == 0
    keys = list(services.blobs.list_keys(imports.DEAD_LETTER_PREFIX + "/"))
    assert keys == [
        imports.dead_letter_key(
            gcs.ingest, "p/poison.dcm", gcs.objects.stat(gcs.ingest, "p/poison.dcm").generation
        )
    ]
    with services.blobs.open(keys[0]) as handle:
        record = json.loads(handle.read())
    assert record["uri"] == f"gs://{gcs.ingest}/p/poison.dcm"
    assert (
        "gave up after 5 attempts: RuntimeError: decoder bug" in record["error"]["error"]["message"]
    )


def test_a_retried_event_that_then_succeeds_is_not_dead_lettered(
    client: FlaskClient,
    services: Services,
    gcs: Buckets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gcs.put("p/flaky.dcm", small(), gcs.ingest)
    with monkeypatch.context() as patch:
        patch.setattr(services.index, "add_instances", _index_down)
        for _ in range(imports.MAX_EVENT_ATTEMPTS - 1):
            with pytest.raises(Unavailable):
                event(services, gcs, "p/flaky.dcm")
    assert event(services, gcs, "p/flaky.dcm") == EventOutcome.IMPORTED
    assert list(services.blobs.list_keys(imports.DEAD_LETTER_PREFIX + "/")) == []
    assert instance_count(client) == 1


def _index_down(records: list[object]) -> list[Exception]:
    """Index.add_instances while the index is unreachable: every row gets the error."""
    return [Unavailable("index unreachable") for _ in records]


def test_trigger_into_a_missing_store_raises(services: Services, gcs: Buckets) -> None:
    gcs.put("a.dcm", small(), gcs.ingest)
    missing = STORE.replace("dicomStores/default", "dicomStores/absent")
    with pytest.raises(NotFound):
        imports.import_object_event(services, gcs.ingest, "a.dcm", "1", missing)


def test_finalized_event_data(client: FlaskClient, services: Services, gcs: Buckets) -> None:
    gcs.put("e/a.dcm", small(), gcs.ingest)
    generation = int(
        gcs.objects.stat(gcs.ingest, "e/a.dcm").generation
    )  # Cloud Storage sends a string
    data = {"bucket": gcs.ingest, "name": "e/a.dcm", "generation": generation, "size": "1"}
    assert imports.import_finalized_event(services, data, STORE) == EventOutcome.IMPORTED
    data["generation"] = str(generation)
    assert imports.import_finalized_event(services, data, STORE) == EventOutcome.DUPLICATE
    assert instance_count(client) == 1


@pytest.mark.parametrize(
    "data",
    [
        None,
        [],
        {},
        {"bucket": INGEST, "name": "a.dcm"},
        {"bucket": INGEST, "name": "", "generation": "1"},
        {"bucket": None, "name": "a.dcm", "generation": "1"},
        {"bucket": "Bad/Bucket", "name": "a.dcm", "generation": "1"},
    ],
)
def test_malformed_finalized_events_are_dropped(services: Services, gcs: object, data: Any) -> None:
    assert imports.import_finalized_event(services, data, STORE) == EventOutcome.IGNORED


@pytest.mark.parametrize("after", ["", "archive", "move:", "move:../x", "delete:x"])
def test_bad_after_setting(after: str) -> None:
    from shared.errors import ConfigurationError

    with pytest.raises(ConfigurationError):
        imports.parse_after(after)


# --- the inbox watcher (embedded only: it watches the gs:// folder) ----------------------------
@pytest.mark.local_only
def test_watcher_waits_for_stable_files(
    client: FlaskClient, services: Services, gcs: Buckets
) -> None:
    root = gcs.inbox_root()
    watcher = InboxWatcher(services, root, INGEST, STORE)
    inbox = root / INGEST
    data = small()
    (inbox / "scan.dcm").write_bytes(data[:100])  # a copy in progress
    (inbox / ".hidden.dcm").write_bytes(b"editor temp")
    (inbox / "notes.txt").write_bytes(b"ignored")
    assert watcher.poll_once() == {}  # first sight: wait one poll
    with open(inbox / "scan.dcm", "ab") as handle:
        handle.write(data[100:])  # the copy goes on: size and mtime move
    assert watcher.poll_once() == {}
    assert watcher.poll_once() == {"scan.dcm": EventOutcome.IMPORTED}
    assert watcher.poll_once() == {}  # handled
    assert instance_count(client) == 1
    restarted = InboxWatcher(services, root, INGEST, STORE)
    assert restarted.poll_once() == {}
    assert restarted.poll_once() == {"scan.dcm": EventOutcome.DUPLICATE}  # the marker
    assert instance_count(client) == 1


@pytest.mark.local_only
def test_watcher_retries_after_a_backend_error(
    client: FlaskClient,
    services: Services,
    gcs: Buckets,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    watcher = InboxWatcher(services, gcs.inbox_root(), INGEST, STORE, retry_seconds=0)
    (gcs.inbox_root() / INGEST / "r.dcm").write_bytes(small())
    assert watcher.poll_once() == {}
    with monkeypatch.context() as patch:
        patch.setattr(services.index, "add_instances", _index_down)
        assert watcher.poll_once() == {}  # logged, not handled
    assert watcher.poll_once() == {"r.dcm": EventOutcome.IMPORTED}
    assert instance_count(client) == 1


@pytest.mark.local_only
def test_watcher_end_to_end(client: FlaskClient, services: Services, gcs: Buckets) -> None:
    watcher = InboxWatcher(services, gcs.inbox_root(), INGEST, STORE, after="delete", interval=0.05)
    watcher.start()
    try:
        inbox = gcs.inbox_root() / INGEST
        specs = [Spec(rows=4, columns=4) for _ in range(5)]
        (inbox / "nested" / "deeper").mkdir(parents=True)
        for number, spec in enumerate(specs):
            folder = inbox / ("nested/deeper" if number % 2 else "")
            (folder / f"{number}.dcm").write_bytes(make_instance(spec))
        (inbox / "bad.dcm").write_bytes(b"garbage")
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and instance_count(client) < len(specs):
            time.sleep(0.05)
        for spec in specs:
            found = client.get(f"{DW}/instances?SOPInstanceUID={spec.sop}")
            assert found.status_code == 200
        while time.monotonic() < deadline and len(list(inbox.rglob("*.dcm"))) > 1:
            time.sleep(0.05)
        assert [p.name for p in inbox.rglob("*.dcm")] == ["bad.dcm"]  # imported ones deleted
    finally:
        watcher.stop()
    assert instance_count(client) == len(specs)


# --- Cloud Storage (fake-gcs-server) read in small chunks, whatever the other adapters ----------
def test_import_and_trigger_from_cloud_storage(
    client: FlaskClient,
    services: Services,
    request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from shared.adapters.gcp.gcs_objects import GcsObjectStorage

    emulator = request.getfixturevalue("gcs_emulator")
    cloud = GcsObjectStorage(emulator.client, read_chunk_size=256 * 1024)
    monkeypatch.setattr(services, "objects", cloud, raising=False)
    bucket = emulator.fresh_bucket()
    big = make_instance(Spec(rows=512, columns=512))  # read in several chunks
    cloud.write(bucket, "studies/a/big.dcm", big)
    cloud.write(bucket, "studies/b/small.dcm", small())
    cloud.write(bucket, "studies/b/notes.txt", b"text")
    operation = run_import(client, services, f"gs://{bucket}/studies/**.dcm")
    assert operation["metadata"]["counter"] == {"success": "2"}
    cloud.write(bucket, "drop/new.dcm", small())
    info = cloud.stat(bucket, "drop/new.dcm")
    data = {"bucket": bucket, "name": info.name, "generation": info.generation}
    outcome = imports.import_finalized_event(services, data, STORE, "move:done/")
    assert outcome == EventOutcome.IMPORTED
    assert imports.import_finalized_event(services, data, STORE) == EventOutcome.DUPLICATE
    assert [i.name for i in cloud.list(bucket, "d")] == ["done/drop/new.dcm"]
    assert instance_count(client) == 3
