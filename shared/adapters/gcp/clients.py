"""Google Cloud clients: explicit builders (emulators, tests) and lazy process-wide singletons."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from google.cloud.firestore import Client as FirestoreClient
    from google.cloud.pubsub_v1 import PublisherClient, SubscriberClient
    from google.cloud.storage import Client as StorageClient

T = TypeVar("T")

_LOCK = threading.Lock()
_ENV_LOCK = threading.Lock()
_SINGLETONS: dict[tuple[str, str | None], Any] = {}


def make_storage_client(
    project: str | None = None, *, endpoint: str | None = None
) -> StorageClient:
    """A Cloud Storage client; `endpoint` (e.g. http://127.0.0.1:4443) targets an emulator."""
    from google.cloud.storage import Client  # the libraries are heavy: import only when used

    if endpoint is None:
        return Client(project=project)
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    return Client(
        project=project or "local",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=endpoint),
    )


def make_firestore_client(
    project: str | None = None,
    *,
    emulator_host: str | None = None,
    database: str | None = None,
) -> FirestoreClient:
    """A Firestore client; `emulator_host` (host:port) targets the Firestore emulator."""
    from google.cloud.firestore import Client

    if emulator_host is None:
        return Client(project=project, database=database or "(default)")
    from google.auth.credentials import AnonymousCredentials

    # The library opens its insecure emulator channel only when this variable is set while the
    # client is built; setting it for that one call keeps every other client on its own target.
    with _ENV_LOCK, _scoped_env("FIRESTORE_EMULATOR_HOST", emulator_host):
        return Client(
            project=project or "local",
            credentials=AnonymousCredentials(),
        )


def make_publisher_client(*, emulator_host: str | None = None) -> PublisherClient:
    """A Pub/Sub publisher; `emulator_host` (host:port) targets the Pub/Sub emulator."""
    from google.cloud.pubsub_v1 import PublisherClient

    if emulator_host is None:
        return PublisherClient()
    import grpc
    from google.pubsub_v1.services.publisher.transports import PublisherGrpcTransport

    transport = PublisherGrpcTransport(channel=grpc.insecure_channel(emulator_host))
    return PublisherClient(transport=transport)


def make_subscriber_client(*, emulator_host: str | None = None) -> SubscriberClient:
    """A Pub/Sub subscriber; `emulator_host` (host:port) targets the Pub/Sub emulator."""
    from google.cloud.pubsub_v1 import SubscriberClient

    if emulator_host is None:
        return SubscriberClient()
    import grpc
    from google.pubsub_v1.services.subscriber.transports import SubscriberGrpcTransport

    transport = SubscriberGrpcTransport(channel=grpc.insecure_channel(emulator_host))
    return SubscriberClient(transport=transport)


def storage_client(project: str | None = None) -> StorageClient:
    """The process-wide Cloud Storage client (honours STORAGE_EMULATOR_HOST)."""
    return _singleton("storage", project, lambda: make_storage_client(project))


def firestore_client(project: str | None = None) -> FirestoreClient:
    """The process-wide Firestore client (honours FIRESTORE_EMULATOR_HOST)."""
    return _singleton("firestore", project, lambda: make_firestore_client(project))


def publisher_client() -> PublisherClient:
    """The process-wide Pub/Sub publisher (honours PUBSUB_EMULATOR_HOST)."""
    return _singleton("publisher", None, make_publisher_client)


def subscriber_client() -> SubscriberClient:
    """The process-wide Pub/Sub subscriber (honours PUBSUB_EMULATOR_HOST)."""
    return _singleton("subscriber", None, make_subscriber_client)


def _singleton(kind: str, project: str | None, build: Callable[[], T]) -> T:
    # One client per process: building one per request costs a channel and an auth round trip.
    key = (kind, project)
    with _LOCK:
        if key not in _SINGLETONS:
            _SINGLETONS[key] = build()
        client: T = _SINGLETONS[key]
        return client


@contextmanager
def _scoped_env(name: str, value: str) -> Iterator[None]:
    saved = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = saved
