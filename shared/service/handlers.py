"""Registry of queue message handlers; the one dispatch path for every worker."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from shared.errors import InvalidArgument
from shared.ports.queue import ENVELOPE_VERSION, Message
from shared.service import delete, export_workers, exports, imports, storage
from shared.service.context import Services

logger = logging.getLogger(__name__)

TaskHandler = Callable[[Services, dict[str, Any]], None]

HANDLERS: dict[str, TaskHandler] = {
    delete.PURGE_TASK: delete.handle_purge,
    storage.STORAGE_CLASS_TASK: storage.handle_set_storage_class,
    imports.IMPORT_PLAN_TASK: imports.handle_import_plan,
    imports.IMPORT_TASK: imports.handle_import_shard,
    exports.EXPORT_PLAN_TASK: exports.handle_export_plan,
    exports.EXPORT_GCS_TASK: export_workers.handle_export_gcs,
    exports.EXPORT_BQ_TASK: export_workers.handle_export_bigquery,
    exports.EXPORT_LOAD_TASK: export_workers.handle_export_load,
}


def handle_push(services: Services, event_data: dict[str, Any]) -> None:
    """A Pub/Sub push delivery: malformed envelopes are logged and acknowledged (a retry
    cannot fix them); every other failure raises so that Pub/Sub redelivers the task."""
    from shared.adapters.gcp.pubsub_queue import decode_push

    try:
        message = decode_push(event_data)
        if message.type not in HANDLERS or message.version != ENVELOPE_VERSION:
            raise InvalidArgument(f"unknown task {message.type!r} version {message.version}")
    except InvalidArgument as exc:
        logger.error("dropping an undeliverable task: %s", exc.message)
        return
    dispatch(services, message)


def dispatch(services: Services, message: Message) -> None:
    """Run the handler of the message's type; unknown types and versions are refused loudly."""
    if message.version != ENVELOPE_VERSION:
        raise InvalidArgument(f"unsupported message version {message.version}")
    handler = HANDLERS.get(message.type)
    if handler is None:
        raise InvalidArgument(f"no handler for message type {message.type!r}")
    handler(services, message.payload)
