"""Contract suite for Queue: at-least-once delivery, retries, dead letters, restart recovery."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from shared.adapters.local.sqlite_queue import SqliteQueue
from shared.ports.queue import Message


class WorkerQueue(Protocol):
    """The Queue port plus the worker controls both adapters offer."""

    def publish(self, message: Message) -> None: ...
    def start(self, handler: Callable[[Message], None]) -> None: ...
    def stop(self) -> None: ...
    def join(self, timeout: float = 60.0) -> bool: ...
    def dead_letters(self) -> list[dict[str, object]]: ...


MakeQueue = Callable[..., WorkerQueue]


@pytest.fixture(params=["local", "gcp"])
def make_queue(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MakeQueue]:
    """Each call opens the same durable queue again, as a restarted process would."""
    built: list[WorkerQueue] = []
    if request.param == "gcp":
        from shared.adapters.gcp.pubsub_queue import PubSubQueue

        pubsub = request.getfixturevalue("pubsub_emulator")
        topic = pubsub.fresh_topic()

        def make(**options: Any) -> WorkerQueue:
            options.pop("backoff_seconds", None)  # redelivery timing belongs to Pub/Sub
            queue = PubSubQueue(
                pubsub.project,
                topic,
                pubsub.publisher,
                subscriber=pubsub.subscriber,
                **options,
            )
            if not built:
                queue.create_resources()  # Terraform's job in production
            built.append(queue)
            return queue

    else:

        def make(**options: Any) -> WorkerQueue:
            queue = SqliteQueue(tmp_path / "q.sqlite", **options)
            built.append(queue)
            return queue

    yield make
    for queue in built:
        queue.stop()


def test_every_message_is_handled(make_queue: MakeQueue) -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def handler(message: Message) -> None:
        with lock:
            seen.append(int(message.payload["n"]))

    queue = make_queue(workers=3)
    queue.start(handler)
    for n in range(50):
        queue.publish(Message("t", {"n": n}))
    assert queue.join(30)
    queue.stop()
    assert sorted(seen) == list(range(50))


def test_failures_are_retried_then_dead_lettered(make_queue: MakeQueue) -> None:
    attempts: dict[str, int] = {}

    def handler(message: Message) -> None:
        attempts[message.type] = attempts.get(message.type, 0) + 1
        if message.type == "poison" or attempts[message.type] < 3:
            raise RuntimeError("transient")

    queue = make_queue(workers=1, max_attempts=4, backoff_seconds=0.01)
    queue.start(handler)
    queue.publish(Message("flaky", {}))
    queue.publish(Message("poison", {}))
    assert queue.join(30)
    queue.stop()
    assert attempts == {"flaky": 3, "poison": 4}
    letters = queue.dead_letters()
    assert len(letters) == 1 and letters[0]["attempts"] == 4


def test_tasks_survive_a_restart(make_queue: MakeQueue) -> None:
    first = make_queue()
    first.publish(Message("t", {"n": 1}))  # published, never started: the process "died"
    seen: list[Message] = []
    second = make_queue()
    second.start(seen.append)
    assert second.join(30)
    second.stop()
    assert [m.payload for m in seen] == [{"n": 1}]
