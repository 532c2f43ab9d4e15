"""Long-running operations that fan out: create, publish shard tasks, record, finish once."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from shared.domain.identifiers import StoreName
from shared.domain.operations import Operation
from shared.domain.records import StoreRecord
from shared.ports.queue import Message
from shared.service.context import Services

logger = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_SHARD_SIZE = 200


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
