"""Composition root: the only place that picks adapters for the ports."""

from __future__ import annotations

import logging
import tempfile
import threading
from pathlib import Path

from shared.config import Settings
from shared.ports.warehouse import Warehouse
from shared.service.context import Services

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_services: Services | None = None


def build_services(settings: Settings, *, start_workers: bool | None = None) -> Services:
    """Wire the adapters of the configured backend.

    Queue workers run in this process by default in embedded mode; on Cloud Functions tasks
    arrive by Pub/Sub push to the `tasks` function instead, so none are started there.
    """
    from shared.domain.identifiers import StoreName
    from shared.service import handlers, stores

    services = _gcp(settings) if settings.backend == "gcp" else _local(settings)
    if start_workers if start_workers is not None else settings.backend == "local":
        start = getattr(services.queue, "start", None)
        if callable(start):
            start(lambda message: handlers.dispatch(services, message))
    if settings.create_default_store:
        stores.ensure_store(services, StoreName.parse(settings.default_store))
    logger.info("services ready (backend %s)", settings.backend)
    return services


def _local(settings: Settings) -> Services:
    from shared.adapters.local.dir_objects import DirObjectStorage
    from shared.adapters.local.file_blobs import FileBlobStore
    from shared.adapters.local.sqlite_index import SqliteIndex
    from shared.adapters.local.sqlite_operations import SqliteOperationStore
    from shared.adapters.local.sqlite_queue import SqliteQueue

    data_dir = Path(settings.data_dir).resolve()
    tmp_dir = data_dir / "tmp"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    # Export to BigQuery stages its rows in this embedded bucket (a folder, like every bucket).
    (data_dir / "gcs" / settings.export_staging_bucket).mkdir(parents=True, exist_ok=True)
    return Services(
        settings=settings,
        blobs=FileBlobStore(data_dir / "blobs", fsync=settings.fsync),
        index=SqliteIndex(data_dir / "index.sqlite"),
        operations=SqliteOperationStore(data_dir / "operations.sqlite"),
        queue=SqliteQueue(data_dir / "queue.sqlite", workers=settings.queue_workers),
        tmp_dir=tmp_dir,
        objects=DirObjectStorage(data_dir / "gcs", fsync=settings.fsync),
        warehouse_factory=lambda: _duckdb_warehouse(data_dir),
    )


def _duckdb_warehouse(data_dir: Path) -> Warehouse:
    from shared.adapters.local.duckdb_warehouse import DuckDBWarehouse

    # bq://PROJECT.DATASET.TABLE is schema DATASET in this one file; sources are DATA_DIR/gcs.
    return DuckDBWarehouse(data_dir / "bigquery.duckdb", data_dir / "gcs")


def _gcp(settings: Settings) -> Services:
    from shared.adapters.gcp import clients
    from shared.adapters.gcp.firestore_index import FirestoreIndex
    from shared.adapters.gcp.firestore_operations import FirestoreOperationStore
    from shared.adapters.gcp.gcs_blobs import GcsBlobStore
    from shared.adapters.gcp.gcs_objects import GcsObjectStorage
    from shared.adapters.gcp.pubsub_queue import PubSubQueue

    assert settings.gcp_project and settings.blob_bucket  # Settings.checked() guarantees them
    storage = clients.make_storage_client(
        settings.gcp_project, endpoint=settings.storage_emulator_host
    )
    firestore = clients.make_firestore_client(
        settings.gcp_project,
        emulator_host=settings.firestore_emulator_host,
        database=settings.firestore_database,
    )
    publisher = clients.make_publisher_client(emulator_host=settings.pubsub_emulator_host)
    subscriber = clients.make_subscriber_client(emulator_host=settings.pubsub_emulator_host)
    tmp_dir = Path(tempfile.gettempdir()) / "dicomstore"
    tmp_dir.mkdir(parents=True, exist_ok=True)
    prefix = settings.collection_prefix
    return Services(
        settings=settings,
        blobs=GcsBlobStore(settings.blob_bucket, storage),
        index=FirestoreIndex(firestore, prefix),
        operations=FirestoreOperationStore(firestore, prefix),
        queue=PubSubQueue(
            settings.gcp_project,
            settings.tasks_topic,
            publisher,
            subscriber=subscriber,
            subscription=settings.tasks_subscription,
            workers=settings.queue_workers,
        ),
        tmp_dir=tmp_dir,
        objects=GcsObjectStorage(storage),
        warehouse_factory=lambda: _bigquery_warehouse(settings),
    )


def _bigquery_warehouse(settings: Settings) -> Warehouse:
    from shared.adapters.gcp.bigquery_warehouse import BigQueryWarehouse, make_bigquery_client

    endpoint = settings.bigquery_emulator_host
    if endpoint and "://" not in endpoint:
        endpoint = f"http://{endpoint}"  # BIGQUERY_EMULATOR_HOST is host:port, like the others
    client = make_bigquery_client(settings.gcp_project, endpoint=endpoint)
    return BigQueryWarehouse(client)


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
