"""Queue on SQLite drained by worker threads: durable, at-least-once, retried with back-off.

An in-memory queue would lose a study delete's purge tasks when the process stops; keeping the
tasks in the same data directory means a restarted store finishes what it had accepted.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from pathlib import Path

from shared.adapters.local.sqlite_db import SqliteDatabase
from shared.ports.queue import Message

logger = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    not_before REAL NOT NULL DEFAULT 0,
    lease_until REAL NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL,
    body TEXT NOT NULL,
    attempts INTEGER NOT NULL,
    last_error TEXT NOT NULL,
    failed_at REAL NOT NULL
);
"""

Handler = Callable[[Message], None]


class SqliteQueue:
    """Publish inserts a row; workers lease a row, run the handler, delete it on success.

    A failing task is retried with exponential back-off up to `max_attempts`, then moved to the
    dead_letters table (the local equivalent of a Pub/Sub dead-letter topic). A worker that dies
    mid-task loses its lease after `lease_seconds` and another worker redelivers the task.
    """

    def __init__(
        self,
        path: Path | str,
        *,
        workers: int = 2,
        max_attempts: int = 5,
        lease_seconds: float = 300.0,
        backoff_seconds: float = 0.5,
    ) -> None:
        self.db = SqliteDatabase(path, _SCHEMA)
        self.workers = workers
        self.max_attempts = max_attempts
        self.lease_seconds = lease_seconds
        self.backoff_seconds = backoff_seconds
        self._handler: Handler | None = None
        self._wake = threading.Condition()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._busy = 0

    def publish(self, message: Message) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "INSERT INTO tasks (id, body) VALUES (?, ?)",
                (message.id, json.dumps(message.to_json())),
            )
        with self._wake:
            self._wake.notify()

    def start(self, handler: Handler) -> None:
        """Start the worker threads; tasks left by a previous process are delivered again."""
        if self._threads:
            return
        self._handler = handler
        self._stop.clear()
        with self.db.transaction() as conn:
            conn.execute("UPDATE tasks SET lease_until = 0")  # no worker of ours holds a lease yet
        for number in range(self.workers):
            thread = threading.Thread(target=self._run, name=f"queue-worker-{number}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        with self._wake:
            self._wake.notify_all()
        for thread in self._threads:
            thread.join(timeout)
        self._threads.clear()

    def join(self, timeout: float = 60.0) -> bool:
        """Wait until no task is queued or running (tests and graceful shutdown)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            count = self.db.connection().execute("SELECT COUNT(*) FROM tasks").fetchone()[0]
            if count == 0 and self._busy == 0:
                return True
            time.sleep(0.01)
        return False

    def dead_letters(self) -> list[dict[str, object]]:
        rows = self.db.connection().execute(
            "SELECT id, body, attempts, last_error FROM dead_letters ORDER BY seq"
        )
        return [dict(row) for row in rows]

    def _lease(self) -> tuple[int, str, int] | None:
        now = time.time()
        with self.db.transaction() as conn:
            row = conn.execute(
                "SELECT seq, body, attempts FROM tasks WHERE not_before <= ? AND lease_until <= ?"
                " ORDER BY seq LIMIT 1",
                (now, now),
            ).fetchone()
            if row is None:
                return None
            conn.execute(
                "UPDATE tasks SET lease_until = ?, attempts = attempts + 1 WHERE seq = ?",
                (now + self.lease_seconds, row["seq"]),
            )
            with self._wake:
                self._busy += 1
        return int(row["seq"]), str(row["body"]), int(row["attempts"]) + 1

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                leased = self._lease()
            except Exception:
                logger.exception("queue: could not lease a task")
                leased = None
            if leased is None:
                with self._wake:
                    self._wake.wait(0.5)
                continue
            try:
                self._deliver(*leased)
            finally:
                with self._wake:
                    self._busy -= 1

    def _deliver(self, seq: int, body: str, attempt: int) -> None:
        assert self._handler is not None
        message = Message.from_json(json.loads(body))
        try:
            self._handler(message)
        except Exception as exc:
            self._fail(seq, message, body, attempt, exc)
            return
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM tasks WHERE seq = ?", (seq,))

    def _fail(self, seq: int, message: Message, body: str, attempt: int, exc: Exception) -> None:
        with self.db.transaction() as conn:
            if attempt >= self.max_attempts:
                logger.error(
                    "queue: task %s (%s) dead-lettered after %d attempts: %s",
                    message.id,
                    message.type,
                    attempt,
                    exc,
                )
                conn.execute(
                    "INSERT INTO dead_letters (id, body, attempts, last_error, failed_at)"
                    " VALUES (?, ?, ?, ?, ?)",
                    (message.id, body, attempt, repr(exc), time.time()),
                )
                conn.execute("DELETE FROM tasks WHERE seq = ?", (seq,))
                return
            delay = self.backoff_seconds * (2 ** (attempt - 1))
            logger.warning(
                "queue: task %s (%s) failed (attempt %d), retry in %.1fs: %s",
                message.id,
                message.type,
                attempt,
                delay,
                exc,
            )
            conn.execute(
                "UPDATE tasks SET not_before = ?, lease_until = 0 WHERE seq = ?",
                (time.time() + delay, seq),
            )
