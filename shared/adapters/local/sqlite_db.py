"""Thread-local SQLite connections in WAL mode, shared by the local operation store and queue."""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class SqliteDatabase:
    """One connection per thread on one file; `transaction()` is BEGIN IMMEDIATE ... COMMIT."""

    def __init__(self, path: Path | str, schema: str) -> None:
        self.path = str(path)
        self._local = threading.local()
        # executescript commits any open transaction itself, so it runs outside one.
        self.connection().executescript(schema)

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
            conn.row_factory = sqlite3.Row
            conn.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed enqueue or operation survives power loss (NORMAL in WAL mode
            # may drop the last commits), as the Queue port promises.
            conn.execute("PRAGMA synchronous=FULL")
            conn.execute("PRAGMA busy_timeout=30000")
            self._local.conn = conn
        return conn

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
