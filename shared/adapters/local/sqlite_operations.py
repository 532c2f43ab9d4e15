"""OperationStore on SQLite: operations plus one row per shard result, recorded once."""

from __future__ import annotations

import base64
import json
import sqlite3
from pathlib import Path
from typing import Any

from shared.adapters.local.sqlite_db import SqliteDatabase
from shared.domain.operations import CANCELLED_CODE, Operation, utc_now
from shared.errors import AlreadyExists, InvalidArgument, NotFound

_SCHEMA = """
CREATE TABLE IF NOT EXISTS operations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    name TEXT NOT NULL UNIQUE,
    dataset TEXT NOT NULL,
    api_method_name TEXT NOT NULL,
    create_time TEXT NOT NULL,
    end_time TEXT,
    done INTEGER NOT NULL DEFAULT 0,
    cancel_requested INTEGER NOT NULL DEFAULT 0,
    error TEXT,
    response TEXT,
    logs_url TEXT,
    details TEXT NOT NULL DEFAULT '{}',
    items INTEGER NOT NULL DEFAULT 0,
    shards_total INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS operations_dataset ON operations(dataset, seq);
CREATE TABLE IF NOT EXISTS operation_shards (
    name TEXT NOT NULL,
    shard_id TEXT NOT NULL,
    success INTEGER NOT NULL,
    failure INTEGER NOT NULL,
    errors TEXT NOT NULL,
    PRIMARY KEY (name, shard_id)
);
"""

_SAMPLE_ERRORS = 20


def _dataset_of(name: str) -> str:
    head, sep, _ = name.partition("/operations/")
    if not sep:
        raise InvalidArgument(f"invalid operation name {name!r}")
    return head


class SqliteOperationStore:
    """Counters are sums over shard rows, so a redelivered shard cannot count twice."""

    def __init__(self, path: Path | str) -> None:
        self.db = SqliteDatabase(path, _SCHEMA)

    def create(self, operation: Operation) -> Operation:
        try:
            with self.db.transaction() as conn:
                conn.execute(
                    "INSERT INTO operations (name, dataset, api_method_name, create_time, logs_url,"
                    " details) VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        operation.name,
                        _dataset_of(operation.name),
                        operation.api_method_name,
                        operation.create_time,
                        operation.logs_url,
                        json.dumps(operation.details),
                    ),
                )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"operation {operation.name!r} already exists") from None
        return self.get(operation.name)

    def get(self, name: str) -> Operation:
        conn = self.db.connection()
        row = conn.execute("SELECT * FROM operations WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"operation {name!r} not found")
        return self._load(conn, row)

    def _load(self, conn: sqlite3.Connection, row: sqlite3.Row) -> Operation:
        sums = conn.execute(
            "SELECT COUNT(*), COALESCE(SUM(success), 0), COALESCE(SUM(failure), 0)"
            " FROM operation_shards WHERE name = ?",
            (row["name"],),
        ).fetchone()
        shards_done, success, failure = int(sums[0]), int(sums[1]), int(sums[2])
        done = bool(row["done"])
        pending = 0 if done else max(int(row["items"]) - success - failure, 0)
        return Operation(
            name=row["name"],
            api_method_name=row["api_method_name"],
            create_time=row["create_time"],
            end_time=row["end_time"],
            done=done,
            success=success,
            failure=failure,
            pending=pending,
            cancel_requested=bool(row["cancel_requested"]),
            error=json.loads(row["error"]) if row["error"] else None,
            response=json.loads(row["response"]) if row["response"] else None,
            logs_url=row["logs_url"],
            details=json.loads(row["details"]),
            shards_total=int(row["shards_total"]),
            shards_done=shards_done,
        )

    def list_operations(
        self, dataset: str, page_size: int, page_token: str | None
    ) -> tuple[list[Operation], str | None]:
        before = _decode_token(page_token) if page_token else None
        conn = self.db.connection()
        rows = conn.execute(
            "SELECT * FROM operations WHERE dataset = ? AND (? IS NULL OR seq < ?)"
            " ORDER BY seq DESC LIMIT ?",
            (dataset, before, before, page_size + 1),
        ).fetchall()
        page = [self._load(conn, row) for row in rows[:page_size]]
        token = _encode_token(rows[page_size - 1]["seq"]) if len(rows) > page_size else None
        return page, token

    def set_plan(self, name: str, *, items: int, shards: int) -> None:
        with self.db.transaction() as conn:
            updated = conn.execute(
                "UPDATE operations SET items = ?, shards_total = ? WHERE name = ?",
                (items, shards, name),
            ).rowcount
        if not updated:
            raise NotFound(f"operation {name!r} not found")

    def record_shard(
        self, name: str, shard_id: str, success: int, failure: int, errors: list[dict[str, Any]]
    ) -> bool:
        with self.db.transaction() as conn:
            if conn.execute("SELECT 1 FROM operations WHERE name = ?", (name,)).fetchone() is None:
                raise NotFound(f"operation {name!r} not found")
            inserted = conn.execute(
                "INSERT OR IGNORE INTO operation_shards (name, shard_id, success, failure, errors)"
                " VALUES (?, ?, ?, ?, ?)",
                (name, shard_id, success, failure, json.dumps(errors[:_SAMPLE_ERRORS])),
            ).rowcount
        return bool(inserted)

    def sample_errors(self, name: str) -> list[dict[str, Any]]:
        """Up to 20 per-item errors recorded by the shards, for the operation's error details."""
        rows = self.db.connection().execute(
            "SELECT errors FROM operation_shards WHERE name = ? ORDER BY shard_id", (name,)
        )
        sample: list[dict[str, Any]] = []
        for row in rows:
            sample.extend(json.loads(row["errors"]))
        return sample[:_SAMPLE_ERRORS]

    def request_cancel(self, name: str) -> Operation:
        with self.db.transaction() as conn:
            updated = conn.execute(
                "UPDATE operations SET cancel_requested = 1 WHERE name = ?", (name,)
            ).rowcount
        if not updated:
            raise NotFound(f"operation {name!r} not found")
        operation = self.get(name)
        if not operation.done:
            self.finish(name, error={"code": CANCELLED_CODE, "message": "Operation cancelled"})
        return self.get(name)

    def finish(
        self,
        name: str,
        *,
        error: dict[str, Any] | None = None,
        response: dict[str, Any] | None = None,
    ) -> bool:
        with self.db.transaction() as conn:
            updated = conn.execute(
                "UPDATE operations SET done = 1, end_time = ?, error = ?, response = ?"
                " WHERE name = ? AND done = 0",
                (
                    utc_now(),
                    json.dumps(error) if error is not None else None,
                    json.dumps(response) if response is not None else None,
                    name,
                ),
            ).rowcount
        return bool(updated)


def _encode_token(seq: int) -> str:
    return base64.urlsafe_b64encode(f"op:{seq}".encode()).decode("ascii")


def _decode_token(token: str) -> int:
    try:
        text = base64.urlsafe_b64decode(token.encode("ascii")).decode("ascii")
        kind, _, value = text.partition(":")
        if kind != "op":
            raise ValueError(text)
        return int(value)
    except (ValueError, UnicodeError):
        raise InvalidArgument(f"invalid page token {token!r}") from None
