"""Store, study and series metrics, instance storage info, and storage-class changes."""

from __future__ import annotations

import logging
from typing import Any

from shared.domain.identifiers import validate_uid
from shared.domain.operations import API_SET_BLOB_STORAGE, Operation, utc_now
from shared.domain.records import InstanceRecord, Metrics, StoreRecord
from shared.errors import InvalidArgument, NotFound
from shared.service import fanout
from shared.service.context import Services
from shared.service.store import validate_storage_class

logger = logging.getLogger(__name__)

STORAGE_CLASS_TASK = "set-storage-class"


def _counts(metrics: Metrics, *fields: str) -> dict[str, str]:
    """int64 values as strings, zeros omitted (proto3 JSON, as Google serialises them)."""
    values = {
        "studyCount": metrics.study_count,
        "seriesCount": metrics.series_count,
        "instanceCount": metrics.instance_count,
        "structuredStorageSizeBytes": metrics.structured_bytes,
        "blobStorageSizeBytes": metrics.blob_bytes,
    }
    return {key: str(values[key]) for key in fields if values[key]}


def store_metrics(services: Services, store: StoreRecord) -> dict[str, Any]:
    metrics = services.index.metrics(store.store_id)
    fields = ("studyCount", "seriesCount", "instanceCount")
    sizes = ("structuredStorageSizeBytes", "blobStorageSizeBytes")
    return {"name": store.name, **_counts(metrics, *fields, *sizes)}


def study_metrics(services: Services, store: StoreRecord, study: str) -> dict[str, Any]:
    validate_uid(study, "StudyInstanceUID")
    metrics = services.index.metrics(store.store_id, study)
    if not metrics.instance_count:
        raise NotFound(f"study {study} not found")
    fields = ("seriesCount", "instanceCount", "structuredStorageSizeBytes", "blobStorageSizeBytes")
    return {"study": f"{store.name}/dicomWeb/studies/{study}", **_counts(metrics, *fields)}


def series_metrics(
    services: Services, store: StoreRecord, study: str, series: str
) -> dict[str, Any]:
    validate_uid(study, "StudyInstanceUID")
    validate_uid(series, "SeriesInstanceUID")
    metrics = services.index.metrics(store.store_id, study, series)
    if not metrics.instance_count:
        raise NotFound(f"series {series} of study {study} not found")
    fields = ("instanceCount", "structuredStorageSizeBytes", "blobStorageSizeBytes")
    path = f"{store.name}/dicomWeb/studies/{study}/series/{series}"
    return {"series": path, **_counts(metrics, *fields)}


def storage_info(store: StoreRecord, record: InstanceRecord) -> dict[str, Any]:
    """`:getStorageInfo` of one instance."""
    blob: dict[str, Any] = {"sizeBytes": str(record.size), "storageClass": record.storage_class}
    blob["storageClassUpdateTime"] = record.storage_class_time or record.create_time
    return {
        "referencedResource": (
            f"{store.name}/dicomWeb/studies/{record.study_uid}/series/{record.series_uid}"
            f"/instances/{record.sop_uid}"
        ),
        "blobStorageInfo": blob,
        "structuredStorageInfo": {"sizeBytes": str(record.metadata_size)},
    }


def start_set_storage_class(
    services: Services,
    store: StoreRecord,
    body: dict[str, Any],
    study: str | None = None,
    series: str | None = None,
    sop: str | None = None,
) -> Operation:
    """`:setBlobStorageSettings` on a store, study, series or instance: an operation."""
    settings = body.get("blobStorageSettings")
    if not isinstance(settings, dict) or "blobStorageClass" not in settings:
        raise InvalidArgument("blobStorageSettings.blobStorageClass is required")
    storage_class = validate_storage_class(str(settings["blobStorageClass"]))
    if body.get("filterConfig"):
        raise InvalidArgument(
            "filterConfig is not supported by setBlobStorageSettings yet; "
            "call it on each study, series or instance instead"
        )
    records = _targets(services, store, study, series, sop)
    return fanout.start(
        services,
        store,
        API_SET_BLOB_STORAGE,
        STORAGE_CLASS_TASK,
        records,
        lambda shard: {
            "store_id": store.store_id,
            "storage_class": storage_class,
            "instances": [[r.study_uid, r.series_uid, r.sop_uid] for r in shard],
        },
        details={"storageClass": storage_class},
    )


def _targets(
    services: Services,
    store: StoreRecord,
    study: str | None,
    series: str | None,
    sop: str | None,
) -> list[InstanceRecord]:
    from shared.service import retrieve

    if study is not None:
        return retrieve.find_instances(services, store, study, series, sop)
    return list(fanout.store_instances(services, store))


def handle_set_storage_class(services: Services, payload: dict[str, Any]) -> None:
    """One shard of a storage-class change; idempotent like every task."""
    keys = [(str(a), str(b), str(c)) for a, b, c in payload["instances"]]
    changed = services.index.set_storage_class(
        str(payload["store_id"]), keys, str(payload["storage_class"]), utc_now()
    )
    if fanout.complete_shard(services, payload, changed, len(keys) - changed):
        logger.info("storage class operation %s done", payload["operation"])
