"""`python -m bench.cloud_costs [--instances N]`: billable operations per request on the emulators.

Starts the Firestore and Pub/Sub emulators and fake-gcs-server, wires the cloud services with
the composition root (as the test suite does), drives the `dicomweb` function through its
functions-framework test client, and counts what the Google Cloud clients send:

- Firestore: documents written by Commit/BatchWrite requests (deletes apart) and documents
  returned by BatchGetDocuments/RunQuery (a query that returns nothing still bills one read;
  an aggregation query bills one read per 1,000 index entries counted, at least one);
- Cloud Storage: HTTP requests of the storage client's session, classified as object writes
  (a finished upload), upload requests, downloads (`alt=media`), metadata reads, lists and
  deletes;
- Pub/Sub: Publish requests and the messages they carry.

The interception points are the clients' own transports (the GAPIC Firestore client, the
storage client's requests session, the publisher's GAPIC publish), not the adapters.
"""

from __future__ import annotations

import argparse
import dataclasses
import io
import json
import logging
import math
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

RESULTS = Path(__file__).resolve().parent / "results"
REPO = Path(__file__).resolve().parent.parent
STORE = "projects/local/locations/local/datasets/default/dicomStores/default"
DW = f"/v1/{STORE}/dicomWeb"
PATIENT_ID = "COST001"
BOUNDARY = "COSTBOUNDARY"

# Columns of the report, in order: (counter key, heading).
COLUMNS: tuple[tuple[str, str], ...] = (
    ("fs_reads", "Firestore reads"),
    ("fs_writes", "Firestore writes"),
    ("fs_deletes", "Firestore deletes"),
    ("gcs_object_writes", "GCS object writes"),
    ("gcs_upload_requests", "GCS upload requests"),
    ("gcs_downloads", "GCS downloads"),
    ("gcs_metadata_reads", "GCS metadata reads"),
    ("gcs_lists", "GCS lists"),
    ("gcs_deletes", "GCS deletes"),
    ("pubsub_messages", "Pub/Sub messages"),
)


class Meter:
    """Thread-safe counters, read and reset between scenarios."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def add(self, key: str, amount: int = 1) -> None:
        if amount:
            with self._lock:
                self._counts[key] += amount

    def take(self) -> Counter[str]:
        with self._lock:
            counts, self._counts = self._counts, Counter()
        return counts


# --- instrumentation --------------------------------------------------------------------
def instrument_firestore(client: Any, meter: Meter) -> None:
    """Wrap the GAPIC Firestore client's RPC methods (the last stop before gRPC)."""
    api = client._firestore_api  # builds the GAPIC client and its channel once

    def wrap(name: str, count: Callable[[Any, Any], Any]) -> None:
        original = getattr(api, name)

        def wrapper(*args: Any, **kwargs: Any) -> Any:
            meter.add(f"fs_rpc_{name}")
            request = kwargs.get("request", args[0] if args else None)
            return count(request, original(*args, **kwargs))

        setattr(api, name, wrapper)

    def writes(request: Any, response: Any) -> Any:
        for write in _field(request, "writes") or ():
            is_delete = bool(_field(write, "delete"))
            meter.add("fs_deletes" if is_delete else "fs_writes")
        return response

    def documents(request: Any, response: Iterable[Any]) -> Iterator[Any]:
        returned = 0
        try:
            for item in response:
                if _field(item, "document") or _field(item, "found") or _field(item, "missing"):
                    returned += 1  # a get of a missing document is billed too
                yield item
        finally:
            meter.add("fs_reads", max(returned, 1) if _is_query(request) else returned)

    def aggregations(request: Any, response: Iterable[Any]) -> Iterator[Any]:
        entries = 0
        try:
            for item in response:
                result = _field(item, "result")
                for value in (_field(result, "aggregate_fields") or {}).values():
                    integer = _field(value, "integer_value")
                    entries = max(entries, int(integer or 0))
                yield item
        finally:
            # One read per 1,000 index entries matched (the largest count approximates them).
            meter.add("fs_reads", max(1, math.ceil(entries / 1000)))

    wrap("commit", writes)
    wrap("batch_write", writes)
    wrap("batch_get_documents", documents)
    wrap("run_query", documents)
    wrap("run_aggregation_query", aggregations)


def _is_query(request: Any) -> bool:
    return _field(request, "structured_query") is not None


def _field(message: Any, name: str) -> Any:
    """A field of a proto-plus message or of the dict the library sometimes passes."""
    if message is None:
        return None
    if isinstance(message, dict):
        return message.get(name)
    if name in ("structured_query", "delete", "document", "found", "missing", "result"):
        try:
            if not type(message).pb(message).HasField(name):
                return None
        except (AttributeError, TypeError, ValueError):
            pass
    return getattr(message, name, None)


def instrument_storage(client: Any, meter: Meter) -> None:
    """A response hook on the storage client's requests session: every HTTP request counts."""
    session = client._http  # the AuthorizedSession the uploads and downloads use

    def hook(response: Any, *args: Any, **kwargs: Any) -> Any:
        request = response.request
        url = urlsplit(request.url)
        query = parse_qs(url.query)
        method = request.method.upper()
        ok = 200 <= response.status_code < 300
        if "/upload/" in url.path:
            meter.add("gcs_upload_requests")
            initiating = method == "POST" and query.get("uploadType") == ["resumable"]
            if ok and not initiating:
                meter.add("gcs_object_writes")  # the request that finished an object
        elif method == "DELETE":
            meter.add("gcs_deletes")
        elif (method == "GET" and query.get("alt") == ["media"]) or "/download/" in url.path:
            meter.add("gcs_downloads")
        elif method == "GET" and url.path.rstrip("/").endswith("/o"):
            meter.add("gcs_lists")
        elif method == "GET":
            meter.add("gcs_metadata_reads")
        else:
            meter.add("gcs_other_requests")
        return response

    session.hooks.setdefault("response", []).append(hook)


def instrument_publisher(publisher: Any, meter: Meter) -> None:
    """Wrap the publisher's GAPIC publish, which the batching layer calls once per batch."""
    original = publisher._gapic_publish

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        messages = kwargs.get("messages")
        if messages is None and len(args) > 1:
            messages = args[1]
        meter.add("pubsub_publish_requests")
        meter.add("pubsub_messages", len(messages or ()))
        return original(*args, **kwargs)

    publisher._gapic_publish = wrapper


# --- scenarios --------------------------------------------------------------------------
@dataclasses.dataclass
class Scenario:
    name: str
    unit: str
    units: int
    counts: dict[str, int]

    def per_unit(self) -> dict[str, float]:
        return {key: round(value / self.units, 3) for key, value in sorted(self.counts.items())}


def multipart(part: bytes) -> bytes:
    head = f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
    return head + part + f"\r\n--{BOUNDARY}--\r\n".encode()


def measure(
    firestore_emulator: Any, pubsub_emulator: Any, gcs_emulator: Any, instances: int
) -> list[Scenario]:
    """Run every scenario against running emulators; returns the raw counts per scenario."""
    import functions_framework
    from pydicom import dcmread

    from shared import bootstrap
    from shared.adapters.gcp.pubsub_queue import PubSubQueue
    from shared.config import Settings
    from tests.dicom_factory import make_study

    topic = pubsub_emulator.fresh_topic()
    settings = dataclasses.replace(
        Settings(),
        data_dir=Path(tempfile.mkdtemp(prefix="cloud-costs-")),
        backend="gcp",
        gcp_project=firestore_emulator.project,
        blob_bucket=gcs_emulator.fresh_bucket(),
        tasks_topic=topic,
        tasks_subscription=f"{topic}-workers",
        collection_prefix=f"c{uuid.uuid4().hex[:10]}_",
        firestore_emulator_host=firestore_emulator.emulator.host,
        pubsub_emulator_host=pubsub_emulator.emulator.host,
        storage_emulator_host=gcs_emulator.emulator.url,
        queue_workers=2,
    ).checked()
    PubSubQueue(
        settings.gcp_project or "",
        topic,
        pubsub_emulator.publisher,
        subscriber=pubsub_emulator.subscriber,
        subscription=settings.tasks_subscription,
    ).create_resources()

    services = bootstrap.build_services(settings, start_workers=True)
    meter = Meter()
    index: Any = services.index
    blobs: Any = services.blobs
    queue: Any = services.queue
    instrument_firestore(index.client, meter)
    if getattr(services.operations, "client", None) is not index.client:
        instrument_firestore(services.operations.client, meter)  # type: ignore[attr-defined]
    instrument_storage(blobs.client, meter)
    instrument_publisher(queue.publisher, meter)

    old = bootstrap.set_services(services)
    scenarios: list[Scenario] = []
    try:
        app = functions_framework.create_app(
            target="dicomweb", source=str(REPO / "functions" / "main.py")
        )
        http = app.test_client()
        parts = make_study(instances, patient_id=PATIENT_ID)
        first = dcmread(io.BytesIO(parts[0]), stop_before_pixels=True)
        study, series, sop = first.StudyInstanceUID, first.SeriesInstanceUID, first.SOPInstanceUID
        headers = {
            "Content-Type": f'multipart/related; type="application/dicom"; boundary={BOUNDARY}',
            "Accept": "application/dicom+json",
        }

        def run(name: str, unit: str, units: int, action: Callable[[], None]) -> None:
            meter.take()
            action()
            scenarios.append(Scenario(name, unit, units, dict(meter.take())))

        def expect(response: Any, *statuses: int) -> Any:
            if response.status_code not in statuses:
                raise RuntimeError(f"{response.status_code}: {response.get_data()[:300]!r}")
            response.get_data()  # a streamed body is produced (and its reads made) only now
            response.close()
            return response

        def store() -> None:
            for part in parts:  # one instance per request, as a modality sends them
                expect(http.post(f"{DW}/studies", data=multipart(part), headers=headers), 200)

        run("store (STOW, 1 instance/request)", "stored instance", instances, store)

        def store_batch() -> None:
            body = (
                b"".join(
                    f"--{BOUNDARY}\r\nContent-Type: application/dicom\r\n\r\n".encode()
                    + p
                    + b"\r\n"
                    for p in batch
                )
                + f"--{BOUNDARY}--\r\n".encode()
            )
            expect(http.post(f"{DW}/studies", data=body, headers=headers), 200)

        batch = make_study(instances, patient_id=f"{PATIENT_ID}B")
        run(
            f"store (STOW, {instances} instances/request)",
            "stored instance",
            instances,
            store_batch,
        )

        json_accept = {"Accept": "application/dicom+json"}
        run(
            "search studies (QIDO ?PatientID=)",
            "page",
            1,
            lambda: expect(
                http.get(f"{DW}/studies?PatientID={PATIENT_ID}", headers=json_accept), 200
            ),
        )
        run(
            "search series (QIDO studies/{s}/series)",
            "page",
            1,
            lambda: expect(http.get(f"{DW}/studies/{study}/series", headers=json_accept), 200),
        )
        run(
            "search instances (QIDO .../instances)",
            "page",
            1,
            lambda: expect(
                http.get(f"{DW}/studies/{study}/series/{series}/instances", headers=json_accept),
                200,
            ),
        )
        instance_url = f"{DW}/studies/{study}/series/{series}/instances/{sop}"
        run(
            "retrieve instance (WADO as stored)",
            "retrieved instance",
            1,
            lambda: expect(
                http.get(
                    instance_url,
                    headers={
                        "Accept": 'multipart/related; type="application/dicom"; transfer-syntax=*'
                    },
                ),
                200,
            ),
        )
        run(
            "retrieve instance metadata",
            "retrieved instance",
            1,
            lambda: expect(http.get(f"{instance_url}/metadata", headers=json_accept), 200),
        )

        def delete() -> None:
            expect(http.delete(f"{DW}/studies/{study}"), 200, 202, 204)
            if not queue.join(120):
                raise RuntimeError("the delete task did not finish")

        run("delete study (incl. purge task)", "purged instance", instances, delete)
    finally:
        bootstrap.set_services(old)
        stop = getattr(queue, "stop", None)
        if callable(stop):
            stop()
    return scenarios


# --- reporting --------------------------------------------------------------------------
def markdown(scenarios: list[Scenario]) -> str:
    keys = [key for key, _ in COLUMNS]
    lines = [
        "| scenario | per | " + " | ".join(title for _, title in COLUMNS) + " |",
        "|---|---|" + "---:|" * len(keys),
    ]
    for scenario in scenarios:
        values = scenario.per_unit()
        cells = [_number(values.get(key, 0.0)) for key in keys]
        lines.append(f"| {scenario.name} | {scenario.unit} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _number(value: float) -> str:
    return str(int(value)) if value == int(value) else f"{value:.2f}"


def to_json(scenarios: list[Scenario], instances: int) -> dict[str, Any]:
    return {
        "instances": instances,
        "measured_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "scenarios": [
            {
                "name": s.name,
                "unit": s.unit,
                "units": s.units,
                "totals": dict(sorted(s.counts.items())),
                "per_unit": s.per_unit(),
            }
            for s in scenarios
        ],
    }


def main(argv: list[str] | None = None) -> int:
    from shared.devcloud import emulators

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--instances", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS / "cloud_costs.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    workdir = Path(tempfile.mkdtemp(prefix="cloud-costs-emulators-"))
    started: list[Any] = []
    try:
        firestore = emulators.start_firestore(workdir / "firestore")
        started.append(firestore)
        pubsub = emulators.start_pubsub(workdir / "pubsub")
        started.append(pubsub)
        gcs = emulators.start_gcs(workdir / "gcs")
        started.append(gcs)
        scenarios = measure(firestore, pubsub, gcs, args.instances)
    finally:
        for running in reversed(started):
            running.emulator.stop()
    sys.stdout.write(markdown(scenarios) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(to_json(scenarios, args.instances), indent=2) + "\n")
    sys.stdout.write(f"\nwritten to {args.out}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
