"""Import from Cloud Storage: `:import` operations, the storage trigger, and their one step."""

from __future__ import annotations

import hashlib
import io
import json
import logging
import uuid
from collections.abc import Iterator
from enum import StrEnum
from typing import Any

from shared.domain.identifiers import StoreName
from shared.domain.operations import API_IMPORT, Operation, utc_now
from shared.domain.records import StoreRecord
from shared.errors import (
    AlreadyExists,
    ConfigurationError,
    Conflict,
    DicomStoreError,
    InvalidArgument,
    NotFound,
    PreconditionFailed,
    Unavailable,
)
from shared.ports.objects import (
    ObjectGlob,
    ObjectInfo,
    ObjectStorage,
    compile_glob,
    validate_bucket,
    validate_name,
)
from shared.ports.queue import Message
from shared.service import fanout, stores
from shared.service.context import Services
from shared.service.store import spool_with_checksum, store_one, validate_storage_class

logger = logging.getLogger(__name__)

IMPORT_PLAN_TASK = "import-plan"
IMPORT_TASK = "import-objects"
IMPORT_SHARD_SIZE = 100
IMPORT_RESPONSE_TYPE = (
    "type.googleapis.com/google.cloud.healthcare.v1.dicom.ImportDicomDataResponse"
)
IMPORT_ERROR_DETAILS_TYPE = (
    "type.googleapis.com/google.cloud.healthcare.v1.dicom.ImportDicomDataErrorDetails"
)
MARKER_PREFIX = "markers/ingest"
ATTEMPTS_PREFIX = "markers/ingest-attempts"
DEAD_LETTER_PREFIX = "markers/ingest-dead-letter"
# Deliveries of one event that may raise before it is dead-lettered (as the task queue does).
MAX_EVENT_ATTEMPTS = 5
_EVENT_FIELDS = ("bucket", "name", "generation")
_REQUEST_FIELDS = frozenset({"gcsSource", "blobStorageSettings"})
# What makes a stored file fail, mapped to the google.rpc code recorded for it.
_FAILURE_CODES = (
    ("already exists", AlreadyExists.grpc_code),
    ("being deleted", Conflict.grpc_code),
)


def object_storage(services: Services) -> ObjectStorage:
    """The ObjectStorage adapter for gs:// URIs."""
    return services.objects


# --- the :import operation -------------------------------------------------------------------
def start_import(services: Services, store: StoreRecord, body: dict[str, Any]) -> Operation:
    """`POST {store}:import`: validate now, list and import in queued tasks."""
    glob, storage_class = _parse_request(body)
    dataset = StoreName.parse(store.name).dataset_name
    name = dataset.operation(fanout.new_operation_id())
    operation = services.operations.create(
        Operation(
            name=name,
            api_method_name=API_IMPORT,
            logs_url=fanout.logs_url(services.settings, name),
            details={"store": store.name, "uri": glob.uri, "storageClass": storage_class},
        )
    )
    task = {
        "operation": name,
        "store": store.name,
        "store_id": store.store_id,
        "uri": glob.uri,
        "storage_class": storage_class,
    }
    try:
        services.queue.publish(Message(IMPORT_PLAN_TASK, task))
    except Exception:
        # Nothing would ever finish the operation: end it rather than leave it running forever.
        error = {"code": Unavailable.grpc_code, "message": "could not schedule the import"}
        services.operations.finish(name, error=error)
        raise
    logger.info("import operation %s started from %s", name, glob.uri)
    return operation


def _parse_request(body: dict[str, Any]) -> tuple[ObjectGlob, str]:
    unknown = sorted(set(body) - _REQUEST_FIELDS)
    if unknown:
        raise InvalidArgument(f"unknown field {unknown[0]!r} in the import request")
    source = body.get("gcsSource")
    if not isinstance(source, dict) or not isinstance(source.get("uri"), str):
        raise InvalidArgument("gcsSource.uri is required, as gs://BUCKET/OBJECT")
    if set(source) - {"uri"}:
        raise InvalidArgument(f"unknown field {sorted(set(source) - {'uri'})[0]!r} in gcsSource")
    settings = body.get("blobStorageSettings", {})
    if not isinstance(settings, dict) or set(settings) - {"blobStorageClass"}:
        raise InvalidArgument("blobStorageSettings takes only blobStorageClass")
    storage_class = settings.get("blobStorageClass")
    if storage_class is not None and not isinstance(storage_class, str):
        raise InvalidArgument("blobStorageSettings.blobStorageClass must be a string")
    if storage_class == "BLOB_STORAGE_CLASS_UNSPECIFIED":
        storage_class = None  # the proto enum's zero value: the default class
    return compile_glob(source["uri"]), validate_storage_class(storage_class)


def handle_import_plan(services: Services, payload: dict[str, Any]) -> None:
    """List the matching objects and publish one task per shard; set the plan at the end.

    Shards can finish before the plan is known: they never finish the operation while the plan
    is unset, so this task checks once more after setting it. A redelivery after the plan was
    set only repeats that check; one during listing republishes the same shard ids.
    """
    name = str(payload["operation"])
    operation = services.operations.get(name)
    if operation.done or operation.shards_total:
        _maybe_finish(services, name)
        return
    glob = compile_glob(str(payload["uri"]))
    items = shards = 0
    try:
        for batch in fanout.batches(_matching(object_storage(services), glob), IMPORT_SHARD_SIZE):
            if services.operations.get(name).cancel_requested:
                logger.info("import operation %s cancelled while listing", name)
                return
            services.queue.publish(_shard_message(payload, shards, batch))
            items, shards = items + len(batch), shards + 1
    except NotFound as exc:
        services.operations.finish(name, error={"code": exc.grpc_code, "message": exc.message})
        logger.warning("import operation %s failed: %s", name, exc.message)
        return
    if not items:
        message = f"no object matches {glob.uri}"
        services.operations.finish(name, error={"code": NotFound.grpc_code, "message": message})
        logger.warning("import operation %s failed: %s", name, message)
        return
    services.operations.set_plan(name, items=items, shards=shards)
    logger.info("import operation %s: %d objects in %d shards", name, items, shards)
    _maybe_finish(services, name)


def _matching(objects: ObjectStorage, glob: ObjectGlob) -> Iterator[ObjectInfo]:
    for info in objects.list(glob.bucket, glob.prefix):
        # A name ending in '/' is a folder placeholder of the Cloud console, not a file.
        if not info.name.endswith("/") and glob.matches(info.name):
            yield info


def _shard_message(plan: dict[str, Any], number: int, batch: list[ObjectInfo]) -> Message:
    return Message(
        IMPORT_TASK,
        {
            "operation": plan["operation"],
            "shard": f"{number:08d}",
            "store": plan["store"],
            "store_id": plan["store_id"],
            "storage_class": plan["storage_class"],
            "bucket": batch[0].bucket,
            "objects": [[info.name, info.generation] for info in batch],
        },
    )


def handle_import_shard(services: Services, payload: dict[str, Any]) -> None:
    """Import one shard's objects, record the shard once, finish the operation once.

    A redelivered shard imports the same files again, which the store path treats as identical
    re-uploads; its result is then refused by `record_shard`, so counters never move twice.
    """
    name, shard = str(payload["operation"]), str(payload["shard"])
    bucket = str(payload["bucket"])
    store = _target_store(services, payload)
    storage_class = str(payload["storage_class"])
    cancel = fanout.CancelWatch(services, name)
    success = failure = 0
    errors: list[dict[str, Any]] = []
    for object_name, _generation in payload["objects"]:
        if cancel.requested():
            logger.info("import operation %s: shard %s stopped by a cancel", name, shard)
            break
        if store is None:
            error: dict[str, Any] | None = _error(
                bucket, object_name, NotFound.grpc_code, f"DICOM store {payload['store']} is gone"
            )
        else:
            error = import_object(services, store, bucket, str(object_name), storage_class)
        if error is None:
            success += 1
            continue
        failure += 1
        errors.append(error)
        logger.warning(
            "import operation %s: %s failed: %s", name, error["resource"], error["error"]["message"]
        )
    if not services.operations.record_shard(name, shard, success, failure, errors):
        logger.info("import operation %s: shard %s was recorded before", name, shard)
    _maybe_finish(services, name)


def _target_store(services: Services, payload: dict[str, Any]) -> StoreRecord | None:
    # A store deleted (or deleted and created again) during the import takes no more files.
    try:
        store = services.index.get_store(str(payload["store"]))
    except NotFound:
        return None
    return store if store.store_id == payload["store_id"] else None


def _maybe_finish(services: Services, name: str) -> None:
    operation = services.operations.get(name)
    planned = operation.shards_total > 0
    if operation.done or not planned or operation.shards_done < operation.shards_total:
        return
    total = operation.success + operation.failure
    if operation.failure and not operation.success:
        # Spec 6 [I]: a response with counters unless every file failed.
        error = {
            "code": InvalidArgument.grpc_code,
            "message": f"{operation.failure} of {total} files failed to import",
            "details": [
                {"@type": IMPORT_ERROR_DETAILS_TYPE, "sampleErrors": _sample_errors(services, name)}
            ],
        }
        finished = services.operations.finish(name, error=error)
    else:
        finished = services.operations.finish(name, response={"@type": IMPORT_RESPONSE_TYPE})
    if finished:
        logger.info(
            "import operation %s done: %d imported, %d failed",
            name,
            operation.success,
            operation.failure,
        )


def _sample_errors(services: Services, name: str) -> list[dict[str, Any]]:
    return services.operations.sample_errors(name)


# --- one object ------------------------------------------------------------------------------
def import_object(
    services: Services, store: StoreRecord, bucket: str, name: str, storage_class: str
) -> dict[str, Any] | None:
    """Store one object through the STOW path; None on success (identical duplicates too),
    else the ErrorDetail `{"resource": "gs://...", "error": {code, message}}` of the file."""
    try:
        with object_storage(services).open(bucket, name) as source:
            spooled, size, crc = spool_with_checksum(services, source)
    except (NotFound, InvalidArgument) as exc:
        return _error(bucket, name, exc.grpc_code, exc.message)
    with spooled:
        outcome = store_one(
            services, store, spooled, size, crc, expected_study=None, storage_class=storage_class
        )
    if outcome.stored:
        return None
    detail = outcome.failure_detail
    code = next((c for text, c in _FAILURE_CODES if text in detail), InvalidArgument.grpc_code)
    return _error(bucket, name, code, detail)


def _error(bucket: str, name: str, code: int, message: str) -> dict[str, Any]:
    return {"resource": f"gs://{bucket}/{name}", "error": {"code": code, "message": message}}


# --- the storage trigger ---------------------------------------------------------------------
class EventOutcome(StrEnum):
    """What one object-finalized event did."""

    IMPORTED = "imported"
    FAILED = "failed"
    IGNORED = "ignored"
    DUPLICATE = "duplicate"
    MISSING = "missing"
    DEAD_LETTERED = "dead-lettered"


def parse_after(value: str) -> tuple[str, str]:
    """("keep"|"delete"|"move", prefix) of an ingest after-action setting."""
    action, _, prefix = value.partition(":")
    if action in ("keep", "delete") and not prefix:
        return action, ""
    if action == "move" and prefix:
        try:
            validate_name(prefix.rstrip("/"))
        except InvalidArgument:
            raise ConfigurationError(f"invalid move prefix {prefix!r}") from None
        return action, prefix.rstrip("/") + "/"
    raise ConfigurationError(f"ingest after-action must be keep, delete or move:PREFIX: {value!r}")


def is_importable(name: str, after: str = "keep") -> bool:
    """True for a `.dcm` object outside the move-after-import folder (moves fire events too)."""
    action, prefix = parse_after(after)
    if action == "move" and name.startswith(prefix):
        return False
    return name.lower().endswith(".dcm")


def import_object_event(
    services: Services,
    bucket: str,
    name: str,
    generation: str,
    target_store: str,
    after: str = "keep",
) -> EventOutcome:
    """Import the object of a `google.cloud.storage.object.v1.finalized` event, once.

    The outcome is kept in a create-once marker object per (bucket, name, generation) in the
    blob store, so redeliveries and restarts change nothing. A bad file is recorded, logged and
    returned normally (the event is acknowledged: a poison file must not be retried forever);
    only backend errors raise, so that the platform retries the event.
    """
    if not is_importable(name, after):
        logger.debug("ingest: ignoring gs://%s/%s (not a .dcm object)", bucket, name)
        return EventOutcome.IGNORED
    try:
        validate_bucket(bucket)
    except InvalidArgument:
        logger.error("ingest: dropping an event for the invalid bucket name %r", bucket)
        return EventOutcome.IGNORED
    key = marker_key(bucket, name, generation)
    marker = _read_marker(services, key)
    if marker is not None:
        if marker.get("outcome") == EventOutcome.IMPORTED:
            _after_import(services, bucket, name, generation, after)  # if a crash cut it short
        logger.info("ingest: gs://%s/%s generation %s seen before", bucket, name, generation)
        return EventOutcome.DUPLICATE
    try:
        store = stores.get_store(services, StoreName.parse(target_store))
        error = import_object(services, store, bucket, name, "STANDARD")
    except Exception as exc:
        # A backend outage or a bug: retried by the platform, but never forever.
        if not _last_attempt(services, bucket, name, generation, exc):
            raise
        _dead_letter(services, key, bucket, name, generation, target_store, exc)
        return EventOutcome.DEAD_LETTERED
    if error is not None and error["error"]["code"] == NotFound.grpc_code:
        logger.info("ingest: gs://%s/%s is gone; nothing to import", bucket, name)
        return EventOutcome.MISSING
    outcome = EventOutcome.IMPORTED if error is None else EventOutcome.FAILED
    if not _write_marker(services, key, bucket, name, generation, target_store, outcome, error):
        return EventOutcome.DUPLICATE  # a concurrent delivery recorded it first
    if error is not None:
        logger.warning("ingest: gs://%s/%s failed: %s", bucket, name, error["error"]["message"])
        return outcome
    _after_import(services, bucket, name, generation, after)
    logger.info("ingest: imported gs://%s/%s generation %s", bucket, name, generation)
    return outcome


def import_finalized_event(
    services: Services, data: Any, target_store: str, after: str = "keep"
) -> EventOutcome:
    """The data of a Cloud Storage `object.v1.finalized` CloudEvent, imported once.

    An event without bucket, name or generation cannot become valid by retrying: it is logged
    and acknowledged.
    """
    fields = [data.get(key) if isinstance(data, dict) else None for key in _EVENT_FIELDS]
    if not all(isinstance(value, str | int) and str(value) for value in fields):
        logger.error("ingest: dropping a storage event without bucket, name and generation")
        return EventOutcome.IGNORED
    bucket, name, generation = (str(value) for value in fields)
    return import_object_event(services, bucket, name, generation, target_store, after)


def marker_key(bucket: str, name: str, generation: str) -> str:
    """The blob-store key of the marker of one object generation."""
    digest = _digest(bucket, name, generation)
    return f"{MARKER_PREFIX}/{bucket}/{digest[:2]}/{digest}.json"


def dead_letter_key(bucket: str, name: str, generation: str) -> str:
    """Where an event given up on is recorded: list DEAD_LETTER_PREFIX to find them all."""
    return f"{DEAD_LETTER_PREFIX}/{bucket}/{_digest(bucket, name, generation)}.json"


def _digest(bucket: str, name: str, generation: str) -> str:
    return hashlib.sha256(f"{bucket}\n{name}\n{generation}".encode()).hexdigest()


def _last_attempt(
    services: Services, bucket: str, name: str, generation: str, exc: Exception
) -> bool:
    """Count this failed delivery (one create-once object each); True at the last allowed.

    Counting fails too when the blob store is down: the event is then simply retried.
    """
    prefix = f"{ATTEMPTS_PREFIX}/{bucket}/{_digest(bucket, name, generation)}/"
    attempt = sum(1 for _ in services.blobs.list_keys(prefix)) + 1
    note = json.dumps({"attempt": attempt, "error": f"{type(exc).__name__}: {exc}"[:2000]})
    services.blobs.put(
        f"{prefix}{attempt:04d}-{uuid.uuid4().hex}",
        io.BytesIO(note.encode()),
        content_type="application/json",
    )
    logger.warning(
        "ingest: gs://%s/%s generation %s failed (attempt %d of %d): %s",
        bucket,
        name,
        generation,
        attempt,
        MAX_EVENT_ATTEMPTS,
        type(exc).__name__,
    )
    return attempt >= MAX_EVENT_ATTEMPTS


def _dead_letter(
    services: Services,
    key: str,
    bucket: str,
    name: str,
    generation: str,
    store: str,
    exc: Exception,
) -> None:
    message = f"gave up after {MAX_EVENT_ATTEMPTS} attempts: {type(exc).__name__}: {exc}"
    error = _error(bucket, name, Unavailable.grpc_code, message[:2000])
    outcome = EventOutcome.DEAD_LETTERED
    # The same record twice: where operators list dead letters, and the event's own marker.
    # Either may exist already when a concurrent delivery got there first.
    dead = dead_letter_key(bucket, name, generation)
    _write_marker(services, dead, bucket, name, generation, store, outcome, error)
    _write_marker(services, key, bucket, name, generation, store, outcome, error)
    logger.error(
        "ingest: gs://%s/%s generation %s dead-lettered after %d attempts (%s)",
        bucket,
        name,
        generation,
        MAX_EVENT_ATTEMPTS,
        dead,
    )


def _read_marker(services: Services, key: str) -> dict[str, Any] | None:
    try:
        with services.blobs.open(key) as handle:
            marker = json.loads(handle.read())
    except NotFound:
        return None
    except ValueError:
        logger.error("ingest: unreadable marker %s; handling the object again", key)
        return None
    return marker if isinstance(marker, dict) else None


def _write_marker(
    services: Services,
    key: str,
    bucket: str,
    name: str,
    generation: str,
    store: str,
    outcome: EventOutcome,
    error: dict[str, Any] | None,
) -> bool:
    marker = {
        "uri": f"gs://{bucket}/{name}",
        "generation": generation,
        "store": store,
        "outcome": str(outcome),
        "error": error,
        "time": utc_now(),
    }
    data = io.BytesIO(json.dumps(marker).encode())
    try:
        services.blobs.put(key, data, if_absent=True, content_type="application/json")
    except PreconditionFailed:
        return False
    return True


def _after_import(services: Services, bucket: str, name: str, generation: str, after: str) -> None:
    action, prefix = parse_after(after)
    if action == "keep":
        return
    objects = object_storage(services)
    if action == "move":
        try:
            with objects.open(bucket, name) as source:
                objects.write(bucket, prefix + name, source, "application/dicom")
        except NotFound:
            return  # moved (or removed) already
        except DicomStoreError as exc:
            logger.error("ingest: could not move gs://%s/%s: %s", bucket, name, exc.message)
            return
    # Only the generation that was imported: a newer upload of the same name stays.
    objects.delete(bucket, name, generation=generation)
