"""Composition root: the only place that picks adapters for the ports."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from shared.config import Settings
from shared.service.context import Services

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_services: Services | None = None


def build_services(settings: Settings) -> Services:
    """Wire the adapters of the configured backend; starts the local queue's workers."""
    from shared.adapters.local.file_blobs import FileBlobStore
    from shared.adapters.local.sqlite_index import SqliteIndex
    from shared.adapters.local.sqlite_operations import SqliteOperationStore
    from shared.adapters.local.sqlite_queue import SqliteQueue
    from shared.domain.identifiers import StoreName
    from shared.service import handlers, stores

    data_dir = Path(settings.data_dir).resolve()
    tmp_dir = data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    queue = SqliteQueue(data_dir / "queue.sqlite", workers=settings.queue_workers)
    services = Services(
        settings=settings,
        blobs=FileBlobStore(data_dir / "blobs", fsync=settings.fsync),
        index=SqliteIndex(data_dir / "index.sqlite"),
        operations=SqliteOperationStore(data_dir / "operations.sqlite"),
        queue=queue,
        tmp_dir=tmp_dir,
    )
    queue.start(lambda message: handlers.dispatch(services, message))
    if settings.create_default_store:
        stores.ensure_store(services, StoreName.parse(settings.default_store))
    logger.info("embedded store ready in %s", data_dir)
    return services


def get_services() -> Services:
    """The process-wide services, built on first use (one per warm function instance)."""
    global _services
    if _services is None:
        with _lock:
            if _services is None:
                _services = build_services(Settings.from_env())
    return _services


def set_services(services: Services | None) -> Services | None:
    """Replace the process-wide services (tests, the embedded server); returns the old ones."""
    global _services
    with _lock:
        old, _services = _services, services
    return old
