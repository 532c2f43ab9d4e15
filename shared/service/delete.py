"""Delete: instances at once; studies and series by an operation that fans out purge shards."""

from __future__ import annotations

import logging
from typing import Any

from shared.domain.identifiers import validate_uid
from shared.domain.operations import API_DELETE_SERIES, API_DELETE_STUDY, Operation
from shared.domain.records import StoreRecord
from shared.errors import NotFound
from shared.service import fanout
from shared.service.context import Services

logger = logging.getLogger(__name__)

PURGE_TASK = "purge-instances"
PURGE_SHARD_SIZE = 200


def delete_instance(
    services: Services, store: StoreRecord, study: str, series: str, sop: str
) -> None:
    """Remove one instance now: the index row first (hidden at once), then its blob."""
    for uid, what in (
        (study, "StudyInstanceUID"),
        (series, "SeriesInstanceUID"),
        (sop, "SOPInstanceUID"),
    ):
        validate_uid(uid, what)
    record = services.index.get_instance(store.store_id, study, series, sop)
    services.index.remove_instances(store.store_id, [record.key])
    services.blobs.delete(record.blob_key)
    logger.info("deleted instance %s", sop)


def start_delete(
    services: Services, store: StoreRecord, study: str, series: str | None = None
) -> Operation:
    """Hide the study/series at once and return the operation that purges it."""
    validate_uid(study, "StudyInstanceUID")
    if series is not None:
        validate_uid(series, "SeriesInstanceUID")
    records = services.index.mark_deleting(store.store_id, study, series)
    if not records:
        what = f"series {series} of study {study}" if series else f"study {study}"
        raise NotFound(f"{what} not found")
    return fanout.start(
        services,
        store,
        API_DELETE_SERIES if series else API_DELETE_STUDY,
        PURGE_TASK,
        records,
        lambda shard: {
            "store_id": store.store_id,
            "instances": [[r.study_uid, r.series_uid, r.sop_uid, r.blob_key] for r in shard],
        },
        details={"study": study, "series": series},
        shard_size=PURGE_SHARD_SIZE,
    )


def handle_purge(services: Services, payload: dict[str, Any]) -> None:
    """Purge one shard: blobs, then rows; record the shard once; finish the operation once.

    Redelivery is harmless: deleting a missing blob or row is a no-op and the shard's result is
    recorded only by the first delivery that gets there.
    """
    store_id = str(payload["store_id"])
    instances = [tuple(item) for item in payload["instances"]]
    for _study, _series, _sop, key in instances:
        services.blobs.delete(str(key))
    keys = [(str(a), str(b), str(c)) for a, b, c, _ in instances]
    services.index.remove_instances(store_id, keys)
    if fanout.complete_shard(services, payload, len(keys)):
        logger.info("delete operation %s done", payload["operation"])
