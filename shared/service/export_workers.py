"""Export shards: instances to Cloud Storage objects, or to staged BigQuery rows and one load."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from typing import Any

from shared.domain.operations import EMPTY_TYPE, Operation
from shared.domain.records import InstanceRecord
from shared.errors import DicomStoreError, InvalidArgument, NotFound, Unavailable
from shared.ports.queue import Message
from shared.ports.warehouse import Schema, TableRef, WriteDisposition
from shared.service import exports, fanout
from shared.service.context import Services

logger = logging.getLogger(__name__)

EXPORT_RESPONSE_TYPE = (
    "type.googleapis.com/google.cloud.healthcare.v1.dicom.ExportDicomDataResponse"
)
_NDJSON = "application/x-ndjson"


# --- Cloud Storage ------------------------------------------------------------------------------
def handle_export_gcs(services: Services, payload: dict[str, Any]) -> None:
    """Write the objects of one shard's instances; record the shard once; finish once.

    A redelivered shard writes the same objects again (overwriting is what export does), and
    its result is then refused by `record_shard`, so the counters never move twice.
    """
    from shared.service.export_media import export_files, parse_export_mime_type

    fmt = parse_export_mime_type(str(payload["mime_type"]) or None)
    bucket, prefix = str(payload["bucket"]), str(payload["prefix"])

    def export(record: InstanceRecord) -> None:
        written: list[str] = []
        try:
            for item in export_files(services, record, fmt):
                name = prefix + item.relative_name
                try:
                    services.objects.write(bucket, name, item.data, item.content_type)
                finally:
                    if not isinstance(item.data, bytes):
                        item.data.close()
                written.append(name)
        except DicomStoreError:
            # A frame that fails after others were written: leave none of the instance behind.
            for name in written:
                services.objects.delete(bucket, name)
            raise

    _run_shard(services, payload, export)


# --- BigQuery -----------------------------------------------------------------------------------
def handle_export_bigquery(services: Services, payload: dict[str, Any]) -> None:
    """Turn one shard's instances into NDJSON rows staged in Cloud Storage, with their schema.

    The rows of every shard are loaded in one job at the end (EXPORT_LOAD_TASK), with the
    union of the shard schemas. A redelivered shard writes the same two objects again.
    """
    from shared.dicom import bigquery_rows
    from shared.service.retrieve import full_metadata

    convert = bigquery_rows.json_row if payload["schema"] == "json" else bigquery_rows.flattened_row
    source = str(payload["store"]) if payload["include_source_store"] else None
    lines: list[bytes] = []
    schemas: list[Schema] = []

    def export(record: InstanceRecord) -> None:
        extras = bigquery_rows.RowExtras(
            storage_class=record.storage_class,
            blob_storage_size=record.size,
            structured_storage_size=record.metadata_size,
            last_updated=record.storage_class_time or record.create_time,
            source_store=source,
        )
        row, schema = convert(full_metadata(services, record), extras)
        lines.append(json.dumps(row, separators=(",", ":")).encode() + b"\n")
        schemas.append(schema)

    def stage() -> None:
        if not lines:
            return
        bucket, folder = staging(services, payload)
        shard = str(payload["shard"])
        # Rows first, schema second: a schema object always has its rows beside it.
        services.objects.write(bucket, f"{folder}rows-{shard}.ndjson", b"".join(lines), _NDJSON)
        schema = json.dumps(bigquery_rows.union_schemas(schemas)).encode()
        services.objects.write(bucket, f"{folder}schema-{shard}.json", schema, "application/json")

    _run_shard(services, payload, export, before_record=stage)


def handle_export_load(services: Services, payload: dict[str, Any]) -> None:
    """Load every staged row in one job, then finish the operation; idempotent by job id."""
    from shared.dicom import bigquery_rows

    name = str(payload["operation"])
    operation = services.operations.get(name)
    bucket, folder = staging(services, payload)
    if operation.done:
        _remove_staging(services, bucket, folder)
        return
    schemas = {
        info.name.removeprefix(f"{folder}schema-").removesuffix(".json"): json.loads(
            services.objects.read(bucket, info.name)
        )
        for info in services.objects.list(bucket, f"{folder}schema-")
    }
    table = TableRef(*payload["table"])
    if schemas:
        union = bigquery_rows.union_schemas(schemas.values())
        for shard, schema in schemas.items():
            if _widened(schema, union):
                _conform_staged_rows(services, bucket, f"{folder}rows-{shard}.ndjson", union)
        job_id = f"dicomstore-export-{operation.operation_id}"
        try:
            rows = services.warehouse.load(
                table,
                union,
                [f"gs://{bucket}/{folder}rows-*.ndjson"],
                WriteDisposition(payload["disposition"]),
                job_id=job_id,
            )
        except Unavailable:
            raise  # the task is retried; the job id keeps a second attempt from loading twice
        except DicomStoreError as exc:
            services.operations.finish(name, error={"code": exc.grpc_code, "message": exc.message})
            logger.warning("export operation %s: the load into %s failed: %s", name, table, exc)
            _remove_staging(services, bucket, folder)
            return
        logger.info("export operation %s loaded %d rows into %s", name, rows, table)
    _finish(services, services.operations.get(name), EMPTY_TYPE, strict=True)
    _remove_staging(services, bucket, folder)


def _widened(schema: Schema, union: Schema) -> bool:
    """True when the union changed the type or mode of one of the shard's fields."""
    by_name = {field["name"].lower(): field for field in union}
    for field in schema:
        merged = by_name[field["name"].lower()]
        kind, mode = field["type"], field.get("mode", "NULLABLE")
        if (kind, mode) != (merged["type"], merged.get("mode", "NULLABLE")):
            return True
        if kind == "RECORD" and _widened(field["fields"], merged["fields"]):
            return True
    return False


def _conform_staged_rows(services: Services, bucket: str, name: str, union: Schema) -> None:
    """Rewrite one shard's rows for a union that widened a column (rare: see union_schemas).

    Rewriting is idempotent, so a retried load task may do it again harmlessly.
    """
    from shared.dicom.bigquery_rows import conform_row

    lines = services.objects.read(bucket, name).splitlines()
    rows = [conform_row(json.loads(line), union) for line in lines if line.strip()]
    data = b"".join(json.dumps(row, separators=(",", ":")).encode() + b"\n" for row in rows)
    services.objects.write(bucket, name, data, _NDJSON)
    logger.info("rewrote %d staged rows of %s for the widened schema", len(rows), name)


def staging(services: Services, payload: dict[str, Any]) -> tuple[str, str]:
    """(bucket, folder/) where one operation stages its rows."""
    operation_id = str(payload["operation"]).rsplit("/", 1)[-1]
    settings = services.settings
    return settings.export_staging_bucket, f"{settings.export_staging_prefix}{operation_id}/"


def _remove_staging(services: Services, bucket: str, folder: str) -> None:
    try:
        for info in list(services.objects.list(bucket, folder)):
            services.objects.delete(bucket, info.name)
    except NotFound:
        return


# --- shared by both destinations ---------------------------------------------------------------
def _run_shard(
    services: Services,
    payload: dict[str, Any],
    export: Callable[[InstanceRecord], None],
    before_record: Callable[[], None] | None = None,
) -> None:
    name, shard = str(payload["operation"]), str(payload["shard"])
    store_id = str(payload["store_id"])
    cancel = fanout.CancelWatch(services, name)
    success = failure = 0
    errors: list[dict[str, Any]] = []
    for study, series, sop in payload["instances"]:
        if cancel.requested():
            logger.info("export operation %s: shard %s stopped by a cancel", name, shard)
            if payload["kind"] == exports.BIGQUERY:
                _remove_staging(services, *staging(services, payload))  # no load will run
            return  # a cancelled operation is already done; nothing more to record
        resource = f"{payload['store']}/dicomWeb/studies/{study}/series/{series}/instances/{sop}"
        try:
            export(services.index.get_instance(store_id, study, series, sop))
        except Unavailable:
            raise  # a backend outage: the whole shard is retried, not counted as failures
        except DicomStoreError as exc:
            failure += 1
            errors.append(
                {"resource": resource, "error": {"code": exc.grpc_code, "message": exc.message}}
            )
            logger.warning("export operation %s: %s failed: %s", name, resource, exc.message)
            continue
        success += 1
    if before_record is not None:
        before_record()
    if not services.operations.record_shard(name, shard, success, failure, errors):
        logger.info("export operation %s: shard %s was recorded before", name, shard)
    after_shard(services, payload)


def after_shard(services: Services, payload: dict[str, Any]) -> None:
    """When every shard is recorded: finish a Cloud Storage export, or schedule the load."""
    name = str(payload["operation"])
    operation = services.operations.get(name)
    if operation.done or not operation.shards_total:
        return
    if operation.shards_done < operation.shards_total:
        return
    if payload["kind"] == exports.GCS:
        _finish(services, operation, EXPORT_RESPONSE_TYPE, strict=False)
        return
    load = {key: payload[key] for key in ("operation", "store", "kind", "table", "disposition")}
    services.queue.publish(Message(exports.EXPORT_LOAD_TASK, load))


def finish_empty(services: Services, payload: dict[str, Any]) -> None:
    """An export that selected no instance succeeds at once (nothing is loaded or written)."""
    response = EXPORT_RESPONSE_TYPE if payload["kind"] == exports.GCS else EMPTY_TYPE
    services.operations.finish(str(payload["operation"]), response={"@type": response})


def _finish(services: Services, operation: Operation, response_type: str, *, strict: bool) -> None:
    """Done with a response, or with an error when instances failed.

    BigQuery (strict): Google's page says the response appears only when nothing failed.
    Cloud Storage: spec 7 [I], an error only when every instance failed, as for import.
    """
    total = operation.success + operation.failure
    failed = operation.failure and (strict or not operation.success)
    if failed:
        sample = services.operations.sample_errors(operation.name)[:1]
        first = (
            f"; first: {sample[0]['resource']}: {sample[0]['error']['message']}" if sample else ""
        )
        message = f"{operation.failure} of {total} instances failed to export{first}"
        finished = services.operations.finish(
            operation.name, error={"code": InvalidArgument.grpc_code, "message": message}
        )
    else:
        finished = services.operations.finish(operation.name, response={"@type": response_type})
    if finished:
        logger.info(
            "export operation %s done: %d exported, %d failed",
            operation.name,
            operation.success,
            operation.failure,
        )
