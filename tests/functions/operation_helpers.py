"""Test helpers for fanned-out operations: a worker that dies mid-shard, finishes counted."""

from __future__ import annotations

from typing import Any

import pytest

from shared.ports.queue import Message
from shared.service.context import Services


class WorkerDeath:
    """Makes `owner.method` raise RuntimeError on its `number`th call, once, as if the worker
    process was killed there; every other call goes through."""

    def __init__(
        self, monkeypatch: pytest.MonkeyPatch, owner: object, method: str, number: int
    ) -> None:
        self.inner = getattr(owner, method)
        self.number = number
        self.calls = 0
        monkeypatch.setattr(owner, method, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        if self.calls == self.number:
            raise RuntimeError("worker killed")
        return self.inner(*args, **kwargs)

    @property
    def happened(self) -> bool:
        return self.calls >= self.number


def record_finishes(services: Services, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The names of the operations each time one is finished (the call that made it done)."""
    finish = services.operations.finish
    finished: list[str] = []

    def recording(name: str, **outcome: Any) -> bool:
        done = finish(name, **outcome)
        if done:
            finished.append(name)
        return done

    monkeypatch.setattr(services.operations, "finish", recording)
    return finished


def deliver_twice(services: Services, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every message published from now on reaches the workers twice, as Pub/Sub may do."""
    publish = services.queue.publish

    def twice(message: Message) -> None:
        publish(message)
        publish(message)

    monkeypatch.setattr(services.queue, "publish", twice)
