"""Queue: at-least-once delivery of task messages to the registered handlers."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

ENVELOPE_VERSION = 1


@dataclass(frozen=True)
class Message:
    """A task envelope: `type` selects the handler, `payload` is plain JSON."""

    type: str
    payload: dict[str, Any]
    version: int = ENVELOPE_VERSION
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def to_json(self) -> dict[str, Any]:
        return {"type": self.type, "version": self.version, "id": self.id, "payload": self.payload}

    @classmethod
    def from_json(cls, body: dict[str, Any]) -> Message:
        return cls(
            type=str(body["type"]),
            payload=dict(body.get("payload") or {}),
            version=int(body.get("version", ENVELOPE_VERSION)),
            id=str(body.get("id") or uuid.uuid4().hex),
        )


@runtime_checkable
class Queue(Protocol):
    """Delivery is at least once and unordered: handlers must be idempotent."""

    def publish(self, message: Message) -> None:
        """Enqueue the message; returns once it is durably accepted."""
        ...
