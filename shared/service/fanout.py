"""Long-running operations that fan out: create, publish shard tasks, record, finish once."""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any, TypeVar
from urllib.parse import quote

from shared.config import Settings
from shared.domain.identifiers import StoreName
from shared.domain.operations import Operation
from shared.domain.records import InstanceRecord, StoreRecord
from shared.ports.queue import Message
from shared.service.context import Services

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_SHARD_SIZE = 200
# Reading an operation is a round trip (two in Firestore): look for a cancel at most this often.
CANCEL_POLL_SECONDS = 1.0
_STUDY_PAGE = 1000


def new_operation_id() -> str:
    """Numeric-looking ids like Google's, unique without coordination."""
    return str(uuid.uuid4().int % 10**19)


def start(
    services: Services,
    store: StoreRecord,
    api_method_name: str,
    task: str,
    items: Sequence[T],
    describe: Callable[[list[T]], dict[str, Any]],
    *,
    details: dict[str, Any] | None = None,
    shard_size: int = DEFAULT_SHARD_SIZE,
) -> Operation:
    """Create the operation, plan it, and publish one `task` message per shard of `items`.

    `describe` turns a shard's items into the payload fields of its message; every message also
    carries the operation name and a shard id, which is what makes redelivery harmless.
    """
    dataset = StoreName.parse(store.name).dataset_name
    operation = services.operations.create(
        Operation(
            name=dataset.operation(new_operation_id()),
            api_method_name=api_method_name,
            details={"store": store.name, **(details or {})},
        )
    )
    shards = [list(items[i : i + shard_size]) for i in range(0, len(items), shard_size)]
    services.operations.set_plan(operation.name, items=len(items), shards=len(shards))
    for number, shard in enumerate(shards):
        payload = {"operation": operation.name, "shard": f"{number:06d}", **describe(shard)}
        services.queue.publish(Message(task, payload))
    if not shards:
        services.operations.finish(operation.name)
    logger.info("operation %s: %d items in %d shards", operation.name, len(items), len(shards))
    return services.operations.get(operation.name)


def complete_shard(
    services: Services,
    payload: dict[str, Any],
    success: int,
    failure: int = 0,
    errors: list[dict[str, Any]] | None = None,
) -> bool:
    """Record a shard's result once; finish the operation when it was the last shard.

    Returns True for the one call that finished the operation.
    """
    name = str(payload["operation"])
    services.operations.record_shard(name, str(payload["shard"]), success, failure, errors or [])
    operation = services.operations.get(name)
    if operation.shards_done < operation.shards_total:
        return False
    return services.operations.finish(name)


def logs_url(settings: Settings, operation_name: str) -> str | None:
    """A Cloud Logging query for the operation's log lines (they all carry its name)."""
    if settings.backend != "gcp":
        return None
    query = quote(f'"{operation_name}"', safe="")
    project = quote(settings.gcp_project or "", safe="")
    return f"https://console.cloud.google.com/logs/query;query={query}?project={project}"


def batches(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """`items` in lists of `size` (the last one shorter), without holding more than one."""
    batch: list[T] = []
    for item in items:
        batch.append(item)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def store_instances(services: Services, store: StoreRecord) -> Iterator[InstanceRecord]:
    """Every ACTIVE instance of the store, study by study in study UID order.

    Pages of study UIDs continue after the last UID seen (not at an offset): a page costs the
    same anywhere in a large store, and studies added or removed meanwhile shift nothing.
    """
    after: str | None = None
    while True:
        page = services.index.list_study_uids(store.store_id, after=after, limit=_STUDY_PAGE)
        for study_uid in page:
            yield from services.index.list_instances(store.store_id, study_uid)
        if len(page) < _STUDY_PAGE:
            return
        after = page[-1]


class CancelWatch:
    """Looks for a cancel (or an operation already done) before the first item, then at most
    once per `CANCEL_POLL_SECONDS`."""

    def __init__(self, services: Services, name: str) -> None:
        self.services = services
        self.name = name
        self.checked_at: float | None = None
        self.stopped = False

    def requested(self) -> bool:
        now = time.monotonic()
        if self.stopped or (
            self.checked_at is not None and now - self.checked_at < CANCEL_POLL_SECONDS
        ):
            return self.stopped
        self.checked_at = now
        operation = self.services.operations.get(self.name)
        self.stopped = operation.cancel_requested or operation.done
        return self.stopped
