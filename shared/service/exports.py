"""Export to Cloud Storage or BigQuery: the `:export` request, its filter file and its plan."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from shared.domain.identifiers import StoreName
from shared.domain.operations import API_EXPORT, API_EXPORT_BQ, Operation
from shared.domain.records import InstanceRecord, StoreRecord
from shared.errors import AlreadyExists, Conflict, InvalidArgument, NotFound, Unavailable
from shared.ports.objects import parse_uri, split_uri, validate_name
from shared.ports.queue import Message
from shared.ports.warehouse import TableRef, WriteDisposition
from shared.service import fanout
from shared.service.context import Services

logger = logging.getLogger(__name__)

EXPORT_PLAN_TASK = "export-plan"
EXPORT_GCS_TASK = "export-gcs"
EXPORT_BQ_TASK = "export-bigquery"
EXPORT_LOAD_TASK = "export-bigquery-load"
EXPORT_SHARD_SIZE = 100
GCS = "gcs"
BIGQUERY = "bigquery"
_REQUEST_FIELDS = frozenset({"gcsDestination", "bigqueryDestination", "filterConfig"})
_GCS_FIELDS = frozenset({"uriPrefix", "mimeType"})
_BQ_FIELDS = frozenset(
    {
        "tableUri",
        "writeDisposition",
        "force",
        "includeSourceStore",
        "schemaFlattened",
        "schemaJson",
    }
)
_UID = r"[0-9.]{1,64}"
_FILTER_LINE = re.compile(rf"/studies/({_UID})(?:/series/({_UID})(?:/instances/({_UID}))?)?")
MAX_FILTER_ERRORS = 5  # lines quoted in the message of a malformed filter file


# --- the request -------------------------------------------------------------------------------
def start_export(services: Services, store: StoreRecord, body: dict[str, Any]) -> Operation:
    """`POST {store}:export`: validate now (400s before any work), list and export in tasks."""
    plan = parse_request(services, store, body)
    _check_destination(services, plan)
    dataset = StoreName.parse(store.name).dataset_name
    name = dataset.operation(fanout.new_operation_id())
    operation = services.operations.create(
        Operation(
            name=name,
            api_method_name=API_EXPORT if plan["kind"] == GCS else API_EXPORT_BQ,
            logs_url=fanout.logs_url(services.settings, name),
            details={"store": store.name, "destination": plan["destination"]},
        )
    )
    task = {"operation": name, "store": store.name, "store_id": store.store_id, **plan}
    try:
        services.queue.publish(Message(EXPORT_PLAN_TASK, task))
    except Exception:
        # Nothing would ever finish the operation: end it rather than leave it running forever.
        error = {"code": Unavailable.grpc_code, "message": "could not schedule the export"}
        services.operations.finish(name, error=error)
        raise
    logger.info("export operation %s started to %s", name, plan["destination"])
    return operation


def parse_request(services: Services, store: StoreRecord, body: dict[str, Any]) -> dict[str, Any]:
    """The plan payload of a valid ExportDicomDataRequest; InvalidArgument naming the problem."""
    unknown = sorted(set(body) - _REQUEST_FIELDS)
    if unknown:
        raise InvalidArgument(f"unknown field {unknown[0]!r} in the export request")
    gcs, bigquery = body.get("gcsDestination"), body.get("bigqueryDestination")
    if (gcs is None) == (bigquery is None):
        raise InvalidArgument(
            "an export request needs exactly one of gcsDestination or bigqueryDestination"
        )
    plan = _gcs_plan(gcs) if gcs is not None else _bigquery_plan(store, bigquery)
    plan["filter"] = _filter_uri(body.get("filterConfig"))
    return plan


def _object(value: Any, what: str, allowed: frozenset[str]) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise InvalidArgument(f"{what} must be a JSON object")
    unknown = sorted(set(value) - allowed)
    if unknown:
        raise InvalidArgument(f"unknown field {unknown[0]!r} in {what}")
    return value


def _gcs_plan(value: Any) -> dict[str, Any]:
    from shared.service.export_media import parse_export_mime_type

    destination = _object(value, "gcsDestination", _GCS_FIELDS)
    uri = destination.get("uriPrefix")
    if not isinstance(uri, str) or not uri.startswith("gs://"):
        raise InvalidArgument("gcsDestination.uriPrefix is required, as gs://BUCKET/DIRECTORY")
    bucket, _, directory = uri.removeprefix("gs://").partition("/")
    split_uri(f"gs://{bucket}/x")  # the bucket name alone, with the usual message
    # Google appends the missing '/' of the directory; objects then go under it.
    prefix = directory.strip("/")
    if prefix:
        validate_name(prefix)
    mime_type = destination.get("mimeType")
    if mime_type is not None and not isinstance(mime_type, str):
        raise InvalidArgument("gcsDestination.mimeType must be a string")
    parse_export_mime_type(mime_type)  # refuses what cannot be exported, before any work
    return {
        "kind": GCS,
        "destination": f"gs://{bucket}/{prefix + '/' if prefix else ''}",
        "bucket": bucket,
        "prefix": prefix + "/" if prefix else "",
        "mime_type": mime_type or "",
    }


def _bigquery_plan(store: StoreRecord, value: Any) -> dict[str, Any]:
    destination = _object(value, "bigqueryDestination", _BQ_FIELDS)
    uri = destination.get("tableUri")
    if not isinstance(uri, str):
        raise InvalidArgument("bigqueryDestination.tableUri is required, as bq://P.D.T")
    table = TableRef.parse(uri)
    project = StoreName.parse(store.name).project
    if table.project != project:
        raise InvalidArgument(
            f"the BigQuery dataset must be in the project of the DICOM store ({project}), "
            f"not {table.project}"
        )
    for flag in ("force", "includeSourceStore"):
        if not isinstance(destination.get(flag, False), bool):
            raise InvalidArgument(f"bigqueryDestination.{flag} must be true or false")
    if "schemaFlattened" in destination and "schemaJson" in destination:
        raise InvalidArgument("set at most one of schemaFlattened and schemaJson")
    for mode in ("schemaFlattened", "schemaJson"):
        if mode in destination and destination[mode] != {}:
            raise InvalidArgument(f"bigqueryDestination.{mode} takes no fields: use {{}}")
    disposition, legacy = _disposition(destination)
    return {
        "kind": BIGQUERY,
        "destination": str(table),
        "table": [table.project, table.dataset, table.table],
        "disposition": disposition.value,
        "legacy_force": legacy,
        "include_source_store": bool(destination.get("includeSourceStore", False)),
        "schema": "json" if "schemaJson" in destination else "flattened",
    }


def _disposition(destination: dict[str, Any]) -> tuple[WriteDisposition, bool]:
    """The write disposition, and True when it came from the legacy `force` flag.

    Spec 8.1: an unspecified writeDisposition falls back on `force` (false: the table must
    not exist yet, or be empty; true: WRITE_TRUNCATE); a set one makes `force` ignored.
    """
    raw = destination.get("writeDisposition", "WRITE_DISPOSITION_UNSPECIFIED")
    if raw == "WRITE_DISPOSITION_UNSPECIFIED":
        if destination.get("force", False):
            return WriteDisposition.WRITE_TRUNCATE, True
        return WriteDisposition.WRITE_EMPTY, "force" in destination
    try:
        return WriteDisposition(raw), False
    except ValueError:
        names = ", ".join(d.value for d in WriteDisposition)
        raise InvalidArgument(f"unknown writeDisposition {raw!r}: use one of {names}") from None


def _filter_uri(value: Any) -> str | None:
    if value is None:
        return None
    config = _object(value, "filterConfig", frozenset({"resourcePathsGcsUri"}))
    uri = config.get("resourcePathsGcsUri")
    if uri is None:
        return None
    if not isinstance(uri, str):
        raise InvalidArgument("filterConfig.resourcePathsGcsUri must be a gs:// URI")
    parse_uri(uri)
    return uri


def _check_destination(services: Services, plan: dict[str, Any]) -> None:
    """What can be known to fail before the operation starts is refused with the request."""
    if plan["filter"]:
        bucket, name = parse_uri(plan["filter"])
        try:
            services.objects.stat(bucket, name)
        except NotFound:
            raise InvalidArgument(f"filter file {plan['filter']} does not exist") from None
    if plan["kind"] == GCS:
        if not services.objects.bucket_exists(plan["bucket"]):
            raise InvalidArgument(
                f"Cloud Storage bucket {plan['bucket']} does not exist: create it first"
            )
        return
    table = TableRef(*plan["table"])
    rows = services.warehouse.row_count(table)
    if rows is None:
        return  # a missing table is created by the load
    if plan["legacy_force"] and plan["disposition"] == WriteDisposition.WRITE_EMPTY:
        raise AlreadyExists(
            f"table {table} already exists and force is false: set force, or a writeDisposition"
        )
    if rows and plan["disposition"] == WriteDisposition.WRITE_EMPTY:
        raise Conflict(f"table {table} is not empty and writeDisposition is WRITE_EMPTY")


# --- the filter file ---------------------------------------------------------------------------
@dataclass
class ResourceFilter:
    """The studies, series and instances a filter file lists; a truncated path takes all below."""

    studies: set[str] = field(default_factory=set)
    series: set[tuple[str, str]] = field(default_factory=set)
    instances: set[tuple[str, str, str]] = field(default_factory=set)

    def study_uids(self) -> list[str]:
        named = self.studies | {s for s, _ in self.series} | {s for s, _, _ in self.instances}
        return sorted(named)

    def selects(self, record: InstanceRecord) -> bool:
        return (
            record.study_uid in self.studies
            or (record.study_uid, record.series_uid) in self.series
            or record.key in self.instances
        )

    def paths(self) -> Iterator[tuple[str, tuple[str, ...]]]:
        """Each listed resource as (its filter path, its key)."""
        for study in self.studies:
            yield f"/studies/{study}", (study,)
        for study, series in self.series:
            yield f"/studies/{study}/series/{series}", (study, series)
        for study, series, sop in self.instances:
            yield f"/studies/{study}/series/{series}/instances/{sop}", (study, series, sop)


def parse_filter(text: str, uri: str) -> ResourceFilter:
    """Lines `/studies/S[/series/SE[/instances/I]]`, separated by \\n or \\r\\n.

    Blank lines are skipped; anything else that is not such a path fails the whole export, so
    that a typo never exports more, or less, than the user listed.
    """
    result = ResourceFilter()
    bad: list[str] = []
    for number, raw in enumerate(text.split("\n"), start=1):
        line = raw.rstrip("\r").strip()
        if not line:
            continue
        match = _FILTER_LINE.fullmatch(line.rstrip("/"))
        if match is None:
            bad.append(f"line {number}: {line[:120]!r}")
            continue
        study, series, sop = match.groups()
        if sop:
            result.instances.add((study, series, sop))
        elif series:
            result.series.add((study, series))
        else:
            result.studies.add(study)
    if bad:
        shown = "; ".join(bad[:MAX_FILTER_ERRORS])
        more = f" (and {len(bad) - MAX_FILTER_ERRORS} more)" if len(bad) > MAX_FILTER_ERRORS else ""
        raise InvalidArgument(
            f"filter file {uri} has lines that are not "
            f"/studies/UID[/series/UID[/instances/UID]]: {shown}{more}"
        )
    if not (result.studies or result.series or result.instances):
        raise InvalidArgument(f"filter file {uri} lists no study, series or instance")
    return result


def read_filter(services: Services, uri: str) -> ResourceFilter:
    bucket, name = parse_uri(uri)
    data = services.objects.read(bucket, name)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidArgument(f"filter file {uri} is not UTF-8 text") from None
    return parse_filter(text, uri)


def filtered_instances(
    services: Services, store: StoreRecord, selection: ResourceFilter
) -> tuple[Iterator[InstanceRecord], list[dict[str, Any]]]:
    """The instances a filter selects, and an ErrorDetail for each listed path that matches none.

    Every listed study is read once; the unmatched paths are known when the iterator is spent.
    """
    unmatched: list[dict[str, Any]] = []

    def walk() -> Iterator[InstanceRecord]:
        seen: set[tuple[str, ...]] = set()
        for study in selection.study_uids():
            for record in services.index.list_instances(store.store_id, study):
                if selection.selects(record):
                    seen.update({(record.study_uid,), (record.study_uid, record.series_uid)})
                    seen.add(record.key)
                    yield record
        for path, key in sorted(selection.paths()):
            if key not in seen:
                message = f"{path} is not in the DICOM store"
                unmatched.append({"resource": path, "error": {"code": 5, "message": message}})

    return walk(), unmatched


# --- the plan ----------------------------------------------------------------------------------
def handle_export_plan(services: Services, payload: dict[str, Any]) -> None:
    """List the instances to export and publish one task per shard; set the plan at the end.

    Like the import plan: shards never finish the operation while the plan is unset, so this
    task looks once more after setting it; a redelivery during listing republishes the same
    shard ids, which the operation store records once.
    """
    from shared.service import export_workers

    name = str(payload["operation"])
    operation = services.operations.get(name)
    if operation.done or operation.shards_total:
        export_workers.after_shard(services, payload)
        return
    try:
        store = services.index.get_store(str(payload["store"]))
        if store.store_id != payload["store_id"]:
            raise NotFound(f"DICOM store {payload['store']} is gone")
        unmatched: list[dict[str, Any]] = []
        if payload["filter"]:
            records, unmatched = filtered_instances(
                services, store, read_filter(services, str(payload["filter"]))
            )
        else:
            records = fanout.store_instances(services, store)
        task = EXPORT_GCS_TASK if payload["kind"] == GCS else EXPORT_BQ_TASK
        items = shards = 0
        for batch in fanout.batches(records, EXPORT_SHARD_SIZE):
            if services.operations.get(name).cancel_requested:
                logger.info("export operation %s cancelled while listing", name)
                return
            shard = _shard_payload(payload, shards, batch)
            services.queue.publish(Message(task, shard))
            items, shards = items + len(batch), shards + 1
    except (NotFound, InvalidArgument) as exc:
        services.operations.finish(name, error={"code": exc.grpc_code, "message": exc.message})
        logger.warning("export operation %s failed: %s", name, exc.message)
        return
    if unmatched:
        # The listed paths that match nothing count as failures, recorded as one more shard.
        services.operations.record_shard(name, "unmatched", 0, len(unmatched), unmatched)
        shards += 1
        logger.warning("export operation %s: %d filter paths match nothing", name, len(unmatched))
    services.operations.set_plan(name, items=items + len(unmatched), shards=shards)
    if not shards:
        export_workers.finish_empty(services, payload)
        logger.info("export operation %s: no instance to export", name)
        return
    logger.info("export operation %s: %d instances in %d shards", name, items, shards)
    export_workers.after_shard(services, payload)


def _shard_payload(
    plan: dict[str, Any], number: int, batch: list[InstanceRecord]
) -> dict[str, Any]:
    shard = {key: value for key, value in plan.items() if key != "filter"}
    shard["shard"] = f"{number:08d}"
    shard["instances"] = [list(record.key) for record in batch]
    return shard
