"""DICOM store administration: create, get, list, delete; datasets are implicit."""

from __future__ import annotations

import logging
import unicodedata
import uuid
from typing import Any

from shared.domain.identifiers import DatasetName, StoreName
from shared.domain.operations import utc_now
from shared.domain.records import StoreRecord
from shared.errors import AlreadyExists, InvalidArgument
from shared.service.context import Services

logger = logging.getLogger(__name__)

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
MAX_LABELS = 64
_CONFIG_FIELDS = ("notificationConfig", "notificationConfigs", "streamConfigs")


def create_store(
    services: Services, dataset: DatasetName, store_id: str | None, body: dict[str, Any]
) -> StoreRecord:
    """Create a store (synchronous, like Google); AlreadyExists when the id is taken."""
    if not store_id:
        raise InvalidArgument("dicomStoreId is required")
    name = dataset.store(store_id)
    labels = validate_labels(body.get("labels") or {})
    config = {key: validate_config(key, body[key]) for key in _CONFIG_FIELDS if body.get(key)}
    record = StoreRecord(
        name=name.path,
        store_id=uuid.uuid4().hex,
        labels=labels,
        config=config,
        create_time=utc_now(),
    )
    created = services.index.create_store(record)
    logger.info("created DICOM store %s", name.path)
    return created


PATCHABLE = ("labels", "notificationConfig", "notificationConfigs", "streamConfigs")
MAX_STREAM_CONFIGS = 5


def patch_store(
    services: Services, name: StoreName, update_mask: str | None, body: dict[str, Any]
) -> StoreRecord:
    """Google's PATCH: replace exactly the fields named in updateMask (required)."""
    if not update_mask:
        raise InvalidArgument("updateMask is required, e.g. updateMask=labels")
    fields = [f.strip() for f in update_mask.split(",") if f.strip()]
    unknown = [f for f in fields if f not in PATCHABLE]
    if unknown:
        raise InvalidArgument(
            f"updateMask field(s) {', '.join(unknown)} cannot be updated; "
            f"updatable: {', '.join(PATCHABLE)}"
        )
    record = services.index.get_store(name.path)
    for field in fields:
        if field == "labels":
            record.labels = validate_labels(body.get("labels") or {})
        elif field in body and body[field] not in (None, [], {}):
            record.config[field] = validate_config(field, body[field])
        else:
            record.config.pop(field, None)
    return services.index.update_store(record)


def validate_config(field: str, value: Any) -> Any:
    """Shape checks of notification and stream configs, as Google validates them."""
    if field == "notificationConfig":
        _check_topic(value)
    elif field == "notificationConfigs":
        if not isinstance(value, list):
            raise InvalidArgument("notificationConfigs must be a list")
        for item in value:
            _check_topic(item)
    elif field == "streamConfigs":
        _check_streams(value)
    return value


def _check_topic(config: Any) -> None:
    topic = config.get("pubsubTopic", "") if isinstance(config, dict) else None
    parts = topic.split("/") if isinstance(topic, str) else []
    if len(parts) != 4 or parts[0] != "projects" or parts[2] != "topics" or not all(parts):
        raise InvalidArgument(
            f"invalid pubsubTopic {topic!r}: expected projects/PROJECT/topics/TOPIC"
        )


def _check_streams(value: Any) -> None:
    if not isinstance(value, list):
        raise InvalidArgument("streamConfigs must be a list")
    if len(value) > MAX_STREAM_CONFIGS:
        raise InvalidArgument(f"a store has at most {MAX_STREAM_CONFIGS} streamConfigs")
    uris = []
    for item in value:
        destination = item.get("bigqueryDestination") if isinstance(item, dict) else None
        uri = destination.get("tableUri", "") if isinstance(destination, dict) else ""
        if not isinstance(uri, str) or not uri.startswith("bq://") or len(uri) > 2000:
            raise InvalidArgument(f"invalid streamConfigs tableUri {uri!r}: expected bq://P.D.T")
        uris.append(uri)
    if len(set(uris)) != len(uris):
        raise InvalidArgument("each streamConfigs destination must be unique")


def get_store(services: Services, name: StoreName) -> StoreRecord:
    return services.index.get_store(name.path)


def list_stores(
    services: Services, dataset: DatasetName, page_size: int | None, page_token: str | None
) -> tuple[list[StoreRecord], str | None]:
    size = page_size if page_size else DEFAULT_PAGE_SIZE
    if size < 0:
        raise InvalidArgument("pageSize must not be negative")
    return services.index.list_stores(dataset.path, min(size, MAX_PAGE_SIZE), page_token or None)


def delete_store(services: Services, name: StoreName) -> None:
    """Delete the store and every image in it (Google: 'removes every image')."""
    removed = services.index.delete_store(name.path)
    for record in removed:
        services.blobs.delete(record.blob_key)
    logger.info("deleted DICOM store %s with %d instances", name.path, len(removed))


def ensure_store(services: Services, name: StoreName) -> StoreRecord:
    """Create the store if absent (the embedded default store)."""
    try:
        return create_store(services, name.dataset_name, name.store, {})
    except AlreadyExists:
        return services.index.get_store(name.path)


def validate_labels(labels: Any) -> dict[str, str]:
    if not isinstance(labels, dict):
        raise InvalidArgument("labels must be an object of string keys and values")
    if len(labels) > MAX_LABELS:
        raise InvalidArgument(f"a store has at most {MAX_LABELS} labels")
    for key, value in labels.items():
        if not _is_label_key(key):
            raise InvalidArgument(
                f"invalid label key {key!r}: 1-63 lower-case letters, digits, '_' or '-', "
                "starting with a letter"
            )
        if not isinstance(value, str) or len(value) > 63 or not all(map(_is_label_char, value)):
            raise InvalidArgument(f"invalid label value {value!r} for key {key!r}")
    return dict(labels)


def _is_label_key(key: Any) -> bool:
    # Google: [\p{Ll}\p{Lo}][\p{Ll}\p{Lo}\p{N}_-]{0,62}, at most 128 bytes of UTF-8.
    return (
        isinstance(key, str)
        and 1 <= len(key) <= 63
        and len(key.encode()) <= 128
        and unicodedata.category(key[0]) in ("Ll", "Lo")
        and all(map(_is_label_char, key))
    )


def _is_label_char(char: str) -> bool:
    return char in "_-" or unicodedata.category(char) in ("Ll", "Lo", "Nd", "Nl", "No")
