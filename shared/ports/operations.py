"""OperationStore: long-running operations with per-shard results recorded exactly once."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from shared.domain.operations import Operation


@runtime_checkable
class OperationStore(Protocol):
    """Counters are derived from shard results, so redelivered shards never double-count."""

    def create(self, operation: Operation) -> Operation:
        """Persist a new operation (done=False); AlreadyExists on a name clash."""
        ...

    def get(self, name: str) -> Operation:
        """The operation with counters summed from its shards; NotFound otherwise."""
        ...

    def list_operations(
        self, dataset: str, page_size: int, page_token: str | None
    ) -> tuple[list[Operation], str | None]:
        """Operations of a dataset, newest first, and the next page token."""
        ...

    def set_plan(self, name: str, *, items: int, shards: int) -> None:
        """Record how many items the operation processes, in how many shards."""
        ...

    def record_shard(
        self, name: str, shard_id: str, success: int, failure: int, errors: list[dict[str, Any]]
    ) -> bool:
        """Record one shard's result; False (and no change) if that shard was recorded before."""
        ...

    def sample_errors(self, name: str) -> list[dict[str, Any]]:
        """Up to 20 per-item errors recorded by the shards, for the operation's error details."""
        ...

    def request_cancel(self, name: str) -> Operation:
        """Flag the operation cancelled; running shards stop scheduling more work."""
        ...

    def finish(
        self,
        name: str,
        *,
        error: dict[str, Any] | None = None,
        response: dict[str, Any] | None = None,
    ) -> bool:
        """Mark done with endTime; True only for the one call that made the transition."""
        ...
