"""Contract suite for Queue: at-least-once delivery, retries, dead letters, restart recovery."""

from __future__ import annotations

import threading
from pathlib import Path

from shared.adapters.local.sqlite_queue import SqliteQueue
from shared.ports.queue import Message


def test_every_message_is_handled(tmp_path: Path) -> None:
    seen: list[int] = []
    lock = threading.Lock()

    def handler(message: Message) -> None:
        with lock:
            seen.append(int(message.payload["n"]))

    queue = SqliteQueue(tmp_path / "q.sqlite", workers=3)
    queue.start(handler)
    for n in range(50):
        queue.publish(Message("t", {"n": n}))
    assert queue.join(30)
    queue.stop()
    assert sorted(seen) == list(range(50))


def test_failures_are_retried_then_dead_lettered(tmp_path: Path) -> None:
    attempts: dict[str, int] = {}

    def handler(message: Message) -> None:
        attempts[message.type] = attempts.get(message.type, 0) + 1
        if message.type == "poison" or attempts[message.type] < 3:
            raise RuntimeError("transient")

    queue = SqliteQueue(tmp_path / "q.sqlite", workers=1, max_attempts=4, backoff_seconds=0.01)
    queue.start(handler)
    queue.publish(Message("flaky", {}))
    queue.publish(Message("poison", {}))
    assert queue.join(30)
    queue.stop()
    assert attempts == {"flaky": 3, "poison": 4}
    letters = queue.dead_letters()
    assert len(letters) == 1 and letters[0]["attempts"] == 4


def test_tasks_survive_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "q.sqlite"
    first = SqliteQueue(path)
    first.publish(Message("t", {"n": 1}))  # published, never started: the process "died"
    seen: list[Message] = []
    second = SqliteQueue(path)
    second.start(seen.append)
    assert second.join(30)
    second.stop()
    assert [m.payload for m in seen] == [{"n": 1}]
