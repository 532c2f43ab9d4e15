"""SQLite implementation of the Index port: stores, instance rows and QIDO search in one file."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import re
import sqlite3
import threading
import zlib
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import Any

from shared.adapters.index_common import (
    INSTANCE_NUMBER,
    MODALITIES_IN_STUDY,
    MODALITY,
    PATIENT_NAME,
    SERIES_INSTANCE_COUNT,
    SOP_CLASS_UID,
    SOP_CLASSES_IN_STUDY,
    STUDY_INSTANCE_COUNT,
    STUDY_SEARCH_FIELDS,
    STUDY_SERIES_COUNT,
    dataset_of,
    decode_token,
    encode_token,
    first,
    instance_number,
    levels,
    list_element,
    number_element,
    uid_element,
)
from shared.dicom import attributes
from shared.dicom.attributes import SERIES_UID, SOP_UID, STUDY_UID
from shared.dicom.query import (
    has_wildcard,
    is_prefix_pattern,
    literal_prefix,
    matches_all,
    name_token_hint,
    prefix_upper_bound,
    query_number,
    stored_name_tokens,
)
from shared.domain.operations import utc_now
from shared.domain.records import DicomJson, FrameSpan, InstanceRecord, Metrics, StoreRecord
from shared.domain.search import Condition, Level, MatchKind, SearchQuery
from shared.errors import AlreadyExists, NotFound
from shared.ports.index import DEFAULT_STUDY_PAGE, check_page_limit

logger = logging.getLogger(__name__)

ACTIVE = "ACTIVE"
DELETING = "DELETING"
DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
BUSY_TIMEOUT_MS = 30_000
_CHUNK = 500  # ids per `IN (...)` load; well under SQLite's bound-parameter limit


_DRIVER = {Level.STUDY: "st", Level.SERIES: "se", Level.INSTANCE: "i"}
_ORDER = {
    Level.STUDY: "st.study_uid",
    Level.SERIES: "se.study_uid, se.series_uid",
    Level.INSTANCE: "i.study_uid, i.series_uid, i.instance_number, i.sop_uid",
}
_VISIBLE = {
    Level.STUDY: "st.active_count > 0",
    Level.SERIES: "se.active_count > 0",
    Level.INSTANCE: "i.state = 'ACTIVE'",
}
_JOIN_SERIES = (
    "JOIN series se ON se.store_id = i.store_id AND se.study_uid = i.study_uid"
    " AND se.series_uid = i.series_uid"
)
_JOIN_STUDY = {
    Level.SERIES: "JOIN studies st ON st.store_id = se.store_id AND st.study_uid = se.study_uid",
    Level.INSTANCE: "JOIN studies st ON st.store_id = i.store_id AND st.study_uid = i.study_uid",
}

_ALIAS_RE = re.compile(r"\b(st|se)\.")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS stores (
    name TEXT PRIMARY KEY,
    store_id TEXT NOT NULL UNIQUE,
    dataset TEXT NOT NULL,
    labels TEXT NOT NULL,
    config TEXT NOT NULL,
    create_time TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS stores_by_dataset ON stores (dataset, name);

CREATE TABLE IF NOT EXISTS instances (
    id INTEGER PRIMARY KEY,
    store_id TEXT NOT NULL REFERENCES stores (store_id) ON DELETE CASCADE,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_uid TEXT NOT NULL,
    state TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    transfer_syntax TEXT NOT NULL,
    blob_key TEXT NOT NULL,
    size INTEGER NOT NULL,
    crc32c TEXT NOT NULL,
    storage_class TEXT NOT NULL,
    storage_class_time TEXT NOT NULL,
    number_of_frames INTEGER NOT NULL,
    frames TEXT NOT NULL,
    levels BLOB NOT NULL,
    metadata BLOB NOT NULL,
    metadata_size INTEGER NOT NULL,
    header_length INTEGER NOT NULL,
    trailer_offset INTEGER NOT NULL,
    create_time TEXT NOT NULL,
    instance_number INTEGER,
    UNIQUE (store_id, study_uid, series_uid, sop_uid)
);
CREATE INDEX IF NOT EXISTS instances_order
    ON instances (store_id, study_uid, series_uid, instance_number, sop_uid);
CREATE INDEX IF NOT EXISTS instances_sop ON instances (store_id, sop_uid);

CREATE TABLE IF NOT EXISTS studies (
    id INTEGER PRIMARY KEY,
    store_id TEXT NOT NULL REFERENCES stores (store_id) ON DELETE CASCADE,
    study_uid TEXT NOT NULL,
    attrs TEXT NOT NULL,
    patient_name TEXT,
    patient_id TEXT,
    accession_number TEXT,
    referring_physician_name TEXT,
    study_date TEXT,
    instance_count INTEGER NOT NULL,
    active_count INTEGER NOT NULL,
    deleting INTEGER NOT NULL DEFAULT 0,
    UNIQUE (store_id, study_uid)
);
CREATE INDEX IF NOT EXISTS studies_patient_id ON studies (store_id, patient_id, study_uid);
CREATE INDEX IF NOT EXISTS studies_patient_name ON studies (store_id, patient_name, study_uid);
CREATE INDEX IF NOT EXISTS studies_accession
    ON studies (store_id, accession_number, study_uid);
CREATE INDEX IF NOT EXISTS studies_referring
    ON studies (store_id, referring_physician_name, study_uid);
CREATE INDEX IF NOT EXISTS studies_date ON studies (store_id, study_date, study_uid);

CREATE TABLE IF NOT EXISTS study_name_tokens (
    store_id TEXT NOT NULL,
    token TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    PRIMARY KEY (store_id, token, study_uid)
) WITHOUT ROWID;

CREATE TABLE IF NOT EXISTS series (
    id INTEGER PRIMARY KEY,
    store_id TEXT NOT NULL REFERENCES stores (store_id) ON DELETE CASCADE,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    attrs TEXT NOT NULL,
    modality TEXT,
    instance_count INTEGER NOT NULL,
    active_count INTEGER NOT NULL,
    deleting INTEGER NOT NULL DEFAULT 0,
    UNIQUE (store_id, study_uid, series_uid)
);
CREATE INDEX IF NOT EXISTS series_uid ON series (store_id, series_uid);
CREATE INDEX IF NOT EXISTS series_modality ON series (store_id, modality, study_uid, series_uid);
"""

# Fixed planner statistics (sqlite_stat1 rows) describing a large store: one store holding
# 1M instances in 100k studies. Real ANALYZE output would be empty at start-up and stale later;
# without any, SQLite takes the leading store_id column for selective and walks the ordering
# index of every instance instead of the index of the search key (100x slower at 100k rows).
_PLANNER_STATS = (
    ("instances", "sqlite_autoindex_instances_1", "1000000 1000000 10 5 1"),
    ("instances", "instances_order", "1000000 1000000 10 5 1 1"),
    ("instances", "instances_sop", "1000000 1000000 1"),
    ("studies", "sqlite_autoindex_studies_1", "100000 100000 1"),
    ("studies", "studies_patient_id", "100000 100000 2 1"),
    ("studies", "studies_patient_name", "100000 100000 2 1"),
    ("studies", "studies_accession", "100000 100000 1 1"),
    ("studies", "studies_referring", "100000 100000 100 1"),
    ("studies", "studies_date", "100000 100000 30 1"),
    ("study_name_tokens", "study_name_tokens", "300000 300000 30 1"),
    ("series", "sqlite_autoindex_series_1", "200000 200000 2 1"),
    ("series", "series_uid", "200000 200000 1"),
    ("series", "series_modality", "200000 200000 20000 2 1"),
)

_INSTANCE_COLUMNS = (
    "store_id, study_uid, series_uid, sop_uid, state, sop_class_uid, transfer_syntax, blob_key,"
    " size, crc32c, storage_class, storage_class_time, number_of_frames, frames, levels,"
    " metadata, metadata_size, header_length, trailer_offset, create_time"
)
_KEY_WHERE = "store_id = ? AND study_uid = ? AND series_uid = ? AND sop_uid = ?"


# --- encoding ----------------------------------------------------------------------------


def _pack(value: Any) -> bytes:
    return zlib.compress(json.dumps(value, separators=(",", ":")).encode("utf-8"))


def _unpack(blob: bytes) -> Any:
    return json.loads(zlib.decompress(blob))


def _instance_values(record: InstanceRecord) -> tuple[Any, ...]:
    frames = [[[span.offset, span.length] for span in frame] for frame in record.frames]
    return (
        record.store_id,
        record.study_uid,
        record.series_uid,
        record.sop_uid,
        record.state,
        record.sop_class_uid,
        record.transfer_syntax,
        record.blob_key,
        record.size,
        record.crc32c,
        record.storage_class,
        record.storage_class_time,
        record.number_of_frames,
        json.dumps(frames, separators=(",", ":")),
        _pack({"study": record.study, "series": record.series}),
        _pack(record.metadata),
        record.metadata_size,
        record.header_length,
        record.trailer_offset,
        record.create_time,
        instance_number(record.metadata),
    )


def _record(row: sqlite3.Row) -> InstanceRecord:
    levels = _unpack(row["levels"])
    frames = [
        [FrameSpan(offset, length) for offset, length in frame]
        for frame in json.loads(row["frames"])
    ]
    return InstanceRecord(
        store_id=row["store_id"],
        study_uid=row["study_uid"],
        series_uid=row["series_uid"],
        sop_uid=row["sop_uid"],
        sop_class_uid=row["sop_class_uid"],
        transfer_syntax=row["transfer_syntax"],
        blob_key=row["blob_key"],
        size=row["size"],
        crc32c=row["crc32c"],
        storage_class=row["storage_class"],
        storage_class_time=row["storage_class_time"],
        number_of_frames=row["number_of_frames"],
        frames=frames,
        study=levels["study"],
        series=levels["series"],
        metadata=_unpack(row["metadata"]),
        metadata_size=row["metadata_size"],
        header_length=row["header_length"],
        trailer_offset=row["trailer_offset"],
        create_time=row["create_time"],
        state=row["state"],
    )


def _store(row: sqlite3.Row) -> StoreRecord:
    return StoreRecord(
        name=row["name"],
        store_id=row["store_id"],
        labels=json.loads(row["labels"]),
        config=json.loads(row["config"]),
        create_time=row["create_time"],
    )


# --- search planning ---------------------------------------------------------------------


@dataclass
class _Plan:
    """Key-selecting SQL for one search, and the conditions left to check in Python."""

    level: Level
    where: list[str] = field(default_factory=list)
    params: list[Any] = field(default_factory=list)
    needs: set[str] = field(default_factory=set)
    residual: list[Condition] = field(default_factory=list)

    def sql(self) -> str:
        driver = _DRIVER[self.level]
        table = {"st": "studies st", "se": "series se", "i": "instances i"}[driver]
        joins = []
        if self.level is Level.INSTANCE and "se" in self.needs:
            joins.append(_JOIN_SERIES)
        if self.level is not Level.STUDY and "st" in self.needs:
            joins.append(_JOIN_STUDY[self.level])
        return (
            f"SELECT {driver}.id FROM {table} {' '.join(joins)}"
            f" WHERE {' AND '.join(self.where)} ORDER BY {_ORDER[self.level]}"
        )

    def add(self, clause: str, *params: Any) -> None:
        self.where.append(clause)
        self.params.extend(params)
        self.needs.update(_ALIAS_RE.findall(clause))


class _Pushed(Enum):
    """What SQL did with a condition: nothing, all of it, or a superset `matches` must narrow."""

    NONE = "none"
    EXACT = "exact"
    NARROWED = "narrowed"


def _column(tag: str, level: Level) -> str | None:
    """The SQL column holding a matching key at this level; None when only Python can match."""
    driver = _DRIVER[level]
    if tag == STUDY_UID:
        return f"{driver}.study_uid"
    if tag == SERIES_UID and level is not Level.STUDY:
        return f"{driver}.series_uid"
    if tag == SOP_UID and level is Level.INSTANCE:
        return "i.sop_uid"
    if tag == SOP_CLASS_UID and level is Level.INSTANCE:
        return "i.sop_class_uid"
    if tag == INSTANCE_NUMBER and level is Level.INSTANCE:
        return "i.instance_number"
    if tag == MODALITY and level is not Level.STUDY:
        return "se.modality"
    if tag in STUDY_SEARCH_FIELDS:
        return f"st.{STUDY_SEARCH_FIELDS[tag][0]}"
    return None


def _push(plan: _Plan, store_id: str, condition: Condition) -> _Pushed:
    """Add the condition (or a superset of it) to the SQL where SQL can decide it."""
    if condition.tag == MODALITIES_IN_STUDY:
        return _push_modalities(plan, store_id, condition)
    if condition.tag == PATIENT_NAME and condition.kind is MatchKind.FUZZY:
        return _push_fuzzy(plan, store_id, condition)
    if condition.tag == PATIENT_NAME and condition.kind is MatchKind.WILDCARD:
        return _push_name_pattern(plan, store_id, condition)
    column = _column(condition.tag, plan.level)
    if column is None or condition.kind is MatchKind.FUZZY:
        return _Pushed.NONE
    if column == "i.instance_number":
        return _push_number(plan, column, condition)
    return _push_column(plan, column, condition)


def _push_column(plan: _Plan, column: str, condition: Condition) -> _Pushed:
    """A text column holding the first value, compared case-sensitively like `matches`."""
    kind = condition.kind
    if kind is MatchKind.EXACT:
        plan.add(f"{column} = ?", condition.value)
    elif kind is MatchKind.RANGE and condition.vr == "DA":
        plan.add(f"{column} IS NOT NULL")
        if condition.low is not None:
            plan.add(f"{column} >= ?", condition.low)
        if condition.high is not None:
            plan.add(f"{column} <= ?", condition.high)
    elif kind is MatchKind.UID_LIST and condition.values:
        marks = ", ".join("?" for _ in condition.values)
        plan.add(f"{column} IN ({marks})", *condition.values)
    elif kind is MatchKind.WILDCARD and condition.vr != "PN":
        return _push_prefix(plan, column, condition.value)
    else:
        return _Pushed.NONE
    return _Pushed.EXACT


def _push_prefix(plan: _Plan, column: str, pattern: str) -> _Pushed:
    """The range of the pattern's literal prefix; exact for `prefix*`, a superset otherwise."""
    prefix = literal_prefix(pattern)
    if not prefix:
        return _Pushed.NONE
    clause, params = _prefix_clause(column, prefix)
    plan.add(clause, *params)
    return _Pushed.EXACT if is_prefix_pattern(pattern) else _Pushed.NARROWED


def _prefix_clause(column: str, prefix: str) -> tuple[str, list[str]]:
    upper = prefix_upper_bound(prefix)
    if upper is None:
        return f"{column} >= ?", [prefix]
    return f"({column} >= ? AND {column} < ?)", [prefix, upper]


def _push_number(plan: _Plan, column: str, condition: Condition) -> _Pushed:
    # The column truncates a non-integer IS; `matches` keeps the final say on such values.
    number = query_number(condition.vr, condition.value)
    if condition.kind is not MatchKind.EXACT or not isinstance(number, int):
        return _Pushed.NONE
    plan.add(f"{column} = ?", number)
    return _Pushed.NARROWED


def _push_modalities(plan: _Plan, store_id: str, condition: Condition) -> _Pushed:
    """A study matches when one of its visible series has the modality (PS3.4 C.6.1.1.3)."""
    pushed = _Pushed.EXACT
    if condition.kind is MatchKind.EXACT:
        clause, params = "modality = ?", [condition.value]
    elif condition.kind is MatchKind.UID_LIST and condition.values:
        clause = f"modality IN ({', '.join('?' for _ in condition.values)})"
        params = list(condition.values)
    elif condition.kind is MatchKind.WILDCARD and literal_prefix(condition.value):
        clause, params = _prefix_clause("modality", literal_prefix(condition.value))
        pushed = _Pushed.EXACT if is_prefix_pattern(condition.value) else _Pushed.NARROWED
    else:
        return _Pushed.NONE
    plan.add(
        f"{_DRIVER[plan.level]}.study_uid IN (SELECT study_uid FROM series"
        f" WHERE store_id = ? AND active_count > 0 AND {clause})",
        store_id,
        *params,
    )
    return pushed


def _token_clause(text: str, anchored: bool) -> tuple[str, list[str]]:
    """Name tokens starting with (anchored) or containing the text."""
    if anchored:
        return _prefix_clause("token", text)
    return "instr(token, ?) > 0", [text]


def _push_names(plan: _Plan, store_id: str, hints: list[tuple[str, bool]]) -> None:
    clauses: list[str] = []
    params: list[Any] = [store_id]
    for hint in hints:
        clause, more = _token_clause(*hint)
        clauses.append(clause)
        params.extend(more)
    plan.add(
        "st.study_uid IN (SELECT study_uid FROM study_name_tokens"
        f" WHERE store_id = ? AND ({' OR '.join(clauses)}))",
        *params,
    )


def _push_fuzzy(plan: _Plan, store_id: str, condition: Condition) -> _Pushed:
    hints: list[tuple[str, bool]] = []
    for token in condition.values:
        hint = name_token_hint(token) if has_wildcard(token) else (token, True)
        if hint is None:
            return _Pushed.NONE
        hints.append(hint)
    if not hints:
        return _Pushed.NONE
    _push_names(plan, store_id, hints)
    wild = any(has_wildcard(token) for token in condition.values)
    return _Pushed.NARROWED if wild else _Pushed.EXACT


def _push_name_pattern(plan: _Plan, store_id: str, condition: Condition) -> _Pushed:
    """Every name matching the pattern has a token holding its longest literal part."""
    hint = name_token_hint(condition.value)
    if hint is None:
        return _Pushed.NONE
    _push_names(plan, store_id, [hint])
    return _Pushed.NARROWED


def _plan(store_id: str, query: SearchQuery) -> _Plan:
    plan = _Plan(query.level)
    driver = _DRIVER[query.level]
    plan.add(f"{driver}.store_id = ?", store_id)
    plan.add(_VISIBLE[query.level])
    if query.study_uid is not None:
        plan.add(f"{driver}.study_uid = ?", query.study_uid)
    if query.series_uid is not None and query.level is not Level.STUDY:
        plan.add(f"{driver}.series_uid = ?", query.series_uid)
    for condition in query.conditions:
        if _push(plan, store_id, condition) is not _Pushed.EXACT:
            plan.residual.append(condition)
    return plan


# --- the index ---------------------------------------------------------------------------


@dataclass
class _PendingInsert:
    """One add_instance call waiting for the transaction that will hold it."""

    record: InstanceRecord
    result: InstanceRecord | None = None
    error: BaseException | None = None
    done: threading.Event = field(default_factory=threading.Event)
    lead: bool = False


def _inserted(pending: _PendingInsert) -> InstanceRecord:
    if pending.result is None:
        raise RuntimeError("a group commit finished without a result or an error for a row")
    return pending.result


class _GroupCommit:
    """Group commit: concurrent inserts share one transaction, so one fsync of the WAL.

    A synced commit costs a WAL fsync while holding SQLite's write lock, so concurrent STOW
    requests queued behind each other's fsyncs. The first caller to find no commit running
    leads: it inserts everything pending in one transaction, commits, wakes those callers,
    and hands the lead to the first caller that arrived meanwhile. Nobody is answered before
    the commit that holds its row is durable.
    """

    def __init__(self, insert_batch: Callable[[list[_PendingInsert]], None]) -> None:
        self._insert_batch = insert_batch
        self._lock = threading.Lock()
        self._pending: list[_PendingInsert] = []
        self._leading = False

    def add(self, record: InstanceRecord) -> InstanceRecord:
        (result,) = self.add_many([record])
        if isinstance(result, BaseException):
            raise result
        return result

    def add_many(self, records: Sequence[InstanceRecord]) -> list[InstanceRecord | BaseException]:
        """Queue the records together (so one transaction holds them all, in order); each
        gets its row or its error once that transaction is durable."""
        mine = [_PendingInsert(record) for record in records]
        if not mine:
            return []
        first = mine[0]
        with self._lock:
            self._pending.extend(mine)
            first.lead = not self._leading
            self._leading = True
        # A batch takes every pending insert at once, so all of ours share first's batch.
        if not first.lead:
            first.done.wait()
        if first.lead:
            self._commit_pending()
        return [p.error if p.error is not None else _inserted(p) for p in mine]

    def _commit_pending(self) -> None:
        with self._lock:
            batch, self._pending = self._pending, []
        try:
            self._insert_batch(batch)
        finally:
            with self._lock:
                successor = self._pending[0] if self._pending else None
                self._leading = successor is not None
                if successor is not None:
                    successor.lead = True
            for pending in batch:
                pending.lead = False
                pending.done.set()
            if successor is not None:
                successor.done.set()


class SqliteIndex:
    """Index on one SQLite file (WAL); one connection per thread, writers serialised by SQLite.

    ":memory:" gives a private in-memory database shared by all threads through one lock.
    """

    def __init__(self, path: Path | str) -> None:
        self._target = str(path)
        self._memory = self._target == ":memory:"
        self._local = threading.local()
        self._registry_lock = threading.Lock()
        self._connections: list[sqlite3.Connection] = []
        self._shared: sqlite3.Connection | None = None
        self._guard: contextlib.AbstractContextManager[Any] = (
            threading.RLock() if self._memory else contextlib.nullcontext()
        )
        self._group = _GroupCommit(self._insert_batch)
        with self._connection() as conn:
            if not self._memory:
                conn.execute("PRAGMA journal_mode = WAL")
            conn.executescript(_SCHEMA)
        with self._transaction() as conn:
            _pin_planner_stats(conn)
        with self._connection() as conn:
            conn.execute("ANALYZE sqlite_schema")  # reloads the statistics just written

    def close(self) -> None:
        """Close every connection this index opened (call once no thread uses it)."""
        with self._registry_lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
            self._shared = None
            self._local = threading.local()

    # --- connections ---------------------------------------------------------------------

    def _open(self) -> sqlite3.Connection:
        conn = sqlite3.connect(self._target, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA foreign_keys = ON")
        if not self._memory:
            # A STOW is acknowledged only once its row is durable. In WAL mode NORMAL does not
            # fsync at commit, so a power loss could drop acknowledged instances; FULL syncs
            # the WAL at each commit (about 0.25 ms median here, a few % of a STOW request).
            conn.execute("PRAGMA synchronous = FULL")
        with self._registry_lock:
            self._connections.append(conn)
        return conn

    def _thread_connection(self) -> sqlite3.Connection:
        if self._memory:
            if self._shared is None:
                self._shared = self._open()
            return self._shared
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._open()
            self._local.conn = conn
        return conn

    @contextlib.contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        with self._guard:
            yield self._thread_connection()

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction; IMMEDIATE takes the write lock up front so it never deadlocks."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise

    # --- stores --------------------------------------------------------------------------

    def create_store(self, store: StoreRecord) -> StoreRecord:
        """Insert a store; AlreadyExists if the name (or internal id) is taken."""
        created = dataclasses.replace(store, create_time=store.create_time or utc_now())
        try:
            with self._transaction() as conn:
                conn.execute(
                    "INSERT INTO stores (name, store_id, dataset, labels, config, create_time)"
                    " VALUES (?, ?, ?, ?, ?, ?)",
                    (
                        created.name,
                        created.store_id,
                        dataset_of(created.name),
                        json.dumps(created.labels),
                        json.dumps(created.config),
                        created.create_time,
                    ),
                )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"DICOM store {store.name} already exists") from None
        return created

    def get_store(self, name: str) -> StoreRecord:
        """The store of that resource name; NotFound otherwise."""
        with self._connection() as conn:
            row = conn.execute("SELECT * FROM stores WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise NotFound(f"DICOM store {name} not found")
        return _store(row)

    def list_stores(
        self, dataset: str, page_size: int, page_token: str | None
    ) -> tuple[list[StoreRecord], str | None]:
        """Stores of a dataset ordered by name, and the token of the next page (None at end)."""
        size = DEFAULT_PAGE_SIZE if page_size <= 0 else min(page_size, MAX_PAGE_SIZE)
        after = decode_token(dataset, page_token) if page_token else ""
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT * FROM stores WHERE dataset = ? AND name > ? ORDER BY name LIMIT ?",
                (dataset, after, size + 1),
            ).fetchall()
        stores = [_store(row) for row in rows[:size]]
        more = len(rows) > size
        return stores, encode_token(dataset, stores[-1].name) if more else None

    def update_store(self, store: StoreRecord) -> StoreRecord:
        """Replace labels and config of an existing store; NotFound otherwise."""
        with self._transaction() as conn:
            cursor = conn.execute(
                "UPDATE stores SET labels = ?, config = ? WHERE name = ?",
                (json.dumps(store.labels), json.dumps(store.config), store.name),
            )
            if cursor.rowcount == 0:
                raise NotFound(f"DICOM store {store.name} not found")
            row = conn.execute("SELECT * FROM stores WHERE name = ?", (store.name,)).fetchone()
        return _store(row)

    def delete_store(self, name: str) -> list[InstanceRecord]:
        """Remove the store and every instance row; returns the removed rows (for blob purge)."""
        with self._transaction() as conn:
            row = conn.execute("SELECT store_id FROM stores WHERE name = ?", (name,)).fetchone()
            if row is None:
                raise NotFound(f"DICOM store {name} not found")
            store_id = row["store_id"]
            removed = [
                _record(instance)
                for instance in conn.execute(
                    "SELECT * FROM instances WHERE store_id = ? ORDER BY id", (store_id,)
                )
            ]
            for table in ("instances", "series", "studies", "study_name_tokens"):
                conn.execute(f"DELETE FROM {table} WHERE store_id = ?", (store_id,))
            conn.execute("DELETE FROM stores WHERE name = ?", (name,))
        logger.info("deleted store %s with %d instances", name, len(removed))
        return removed

    # --- instances -----------------------------------------------------------------------

    def add_instance(self, record: InstanceRecord) -> InstanceRecord:
        """Insert the record unless its key exists; returns the row in the index afterwards.

        An empty `create_time` (and `storage_class_time`) is filled in on the record itself.
        Concurrent calls share one transaction and one synced commit (see _GroupCommit).
        """
        if not record.create_time:
            record.create_time = utc_now()
        if not record.storage_class_time:
            record.storage_class_time = record.create_time
        return self._group.add(record)

    def add_instances(self, records: Sequence[InstanceRecord]) -> list[InstanceRecord | Exception]:
        """add_instance for each record, in order, in one transaction and one synced commit."""
        for record in records:
            if not record.create_time:
                record.create_time = utc_now()
            if not record.storage_class_time:
                record.storage_class_time = record.create_time
        results: list[InstanceRecord | Exception] = []
        for result in self._group.add_many(records):
            if not isinstance(result, InstanceRecord | Exception):
                raise result  # KeyboardInterrupt and the like are not a row's outcome
            results.append(result)
        return results

    def _insert_batch(self, batch: list[_PendingInsert]) -> None:
        """Insert every pending record in one transaction; each gets its row or its error."""
        try:
            with self._transaction() as conn:
                for pending in batch:
                    pending.result, pending.error = self._insert_one(conn, pending.record)
        except BaseException as error:  # the commit itself failed: nothing of it is stored
            for pending in batch:
                pending.result, pending.error = None, error
            if not isinstance(error, Exception):
                raise

    def _insert_one(
        self, conn: sqlite3.Connection, record: InstanceRecord
    ) -> tuple[InstanceRecord | None, Exception | None]:
        key = (record.store_id, *record.key)
        conn.execute("SAVEPOINT instance")
        try:
            cursor = conn.execute(
                f"INSERT INTO instances ({_INSTANCE_COLUMNS}, instance_number)"
                f" VALUES ({', '.join('?' * 21)})"
                " ON CONFLICT (store_id, study_uid, series_uid, sop_uid) DO NOTHING",
                _instance_values(record),
            )
            if cursor.rowcount == 0:
                existing = conn.execute(f"SELECT * FROM instances WHERE {_KEY_WHERE}", key)
                result = _record(existing.fetchone())
            else:
                self._count_added(conn, record)
                result = record
        except sqlite3.IntegrityError as error:
            conn.execute("ROLLBACK TO instance")
            conn.execute("RELEASE instance")
            if "FOREIGN KEY" not in str(error):
                return None, error
            return None, NotFound(f"no DICOM store with id {record.store_id}")
        conn.execute("RELEASE instance")
        return result, None

    @staticmethod
    def _count_added(conn: sqlite3.Connection, record: InstanceRecord) -> None:
        """Create or count the study and series rows of a newly inserted instance."""
        study, series = levels(record)
        active = 1 if record.state == ACTIVE else 0
        _count_study(conn, record, study, active)
        conn.execute(
            "INSERT INTO series (store_id, study_uid, series_uid, attrs, modality,"
            " instance_count, active_count) VALUES (?, ?, ?, ?, ?, 1, ?)"
            " ON CONFLICT (store_id, study_uid, series_uid) DO UPDATE SET"
            " instance_count = instance_count + 1,"
            " active_count = active_count + excluded.active_count",
            (
                record.store_id,
                record.study_uid,
                record.series_uid,
                json.dumps(series),
                first(series.get(MODALITY), "CS"),
                active,
            ),
        )

    def get_instance(self, store_id: str, study: str, series: str, sop: str) -> InstanceRecord:
        """The ACTIVE instance; NotFound if absent or being deleted."""
        with self._connection() as conn:
            row = conn.execute(
                f"SELECT * FROM instances WHERE {_KEY_WHERE} AND state = 'ACTIVE'",
                (store_id, study, series, sop),
            ).fetchone()
        if row is None:
            raise NotFound(f"instance {sop} not found")
        return _record(row)

    def list_instances(
        self, store_id: str, study: str, series: str | None = None
    ) -> list[InstanceRecord]:
        """ACTIVE instances of a study or series ordered by series, InstanceNumber, SOP UID."""
        where, params = self._scope(store_id, study, series)
        with self._connection() as conn:
            rows = conn.execute(
                f"SELECT * FROM instances WHERE {where} AND state = 'ACTIVE'"
                " ORDER BY series_uid, instance_number, sop_uid",
                params,
            ).fetchall()
        return [_record(row) for row in rows]

    @staticmethod
    def _scope(store_id: str, study: str, series: str | None) -> tuple[str, tuple[str, ...]]:
        if series is None:
            return "store_id = ? AND study_uid = ?", (store_id, study)
        return "store_id = ? AND study_uid = ? AND series_uid = ?", (store_id, study, series)

    def list_study_uids(
        self, store_id: str, *, after: str | None = None, limit: int = DEFAULT_STUDY_PAGE
    ) -> list[str]:
        """Visible study UIDs after `after`, ascending: a range of the (store, study) index."""
        check_page_limit(limit)
        with self._connection() as conn:
            rows = conn.execute(
                "SELECT study_uid FROM studies WHERE store_id = ? AND study_uid > ?"
                " AND active_count > 0 ORDER BY study_uid LIMIT ?",
                (store_id, after or "", limit),
            ).fetchall()
        return [str(row["study_uid"]) for row in rows]

    def find_study_uid(self, store_id: str, series: str) -> str | None:
        """The study holding this series (a visible one first), for routes without the study."""
        with self._connection() as conn:
            row = conn.execute(
                "SELECT study_uid FROM series WHERE store_id = ? AND series_uid = ?"
                " ORDER BY active_count > 0 DESC, study_uid LIMIT 1",
                (store_id, series),
            ).fetchone()
        return None if row is None else str(row["study_uid"])

    # --- deletion ------------------------------------------------------------------------

    def is_deleting(self, store_id: str, study: str, series: str | None = None) -> bool:
        """True while a study delete (or, with `series`, that series' delete) is purging it."""
        with self._connection() as conn:
            row = conn.execute(
                "SELECT deleting FROM studies WHERE store_id = ? AND study_uid = ?",
                (store_id, study),
            ).fetchone()
            if row is not None and row["deleting"]:
                return True
            if series is None:
                return False
            row = conn.execute(
                "SELECT deleting FROM series WHERE store_id = ? AND study_uid = ?"
                " AND series_uid = ?",
                (store_id, study, series),
            ).fetchone()
        return row is not None and bool(row["deleting"])

    def mark_deleting(
        self, store_id: str, study: str, series: str | None = None
    ) -> list[InstanceRecord]:
        """Hide the study/series at once (state DELETING); returns every row to purge."""
        where, params = self._scope(store_id, study, series)
        with self._transaction() as conn:
            hidden = Counter(
                row["series_uid"]
                for row in conn.execute(
                    f"UPDATE instances SET state = '{DELETING}'"
                    f" WHERE {where} AND state = '{ACTIVE}' RETURNING series_uid",
                    params,
                ).fetchall()
            )
            for series_uid, count in hidden.items():
                conn.execute(
                    "UPDATE series SET active_count = active_count - ?"
                    " WHERE store_id = ? AND study_uid = ? AND series_uid = ?",
                    (count, store_id, study, series_uid),
                )
            conn.execute(
                "UPDATE studies SET active_count = active_count - ?"
                " WHERE store_id = ? AND study_uid = ?",
                (sum(hidden.values()), store_id, study),
            )
            table = "studies" if series is None else "series"
            conn.execute(f"UPDATE {table} SET deleting = 1 WHERE {where}", params)
            rows = conn.execute(
                f"SELECT * FROM instances WHERE {where}"
                " ORDER BY series_uid, instance_number, sop_uid",
                params,
            ).fetchall()
        return [_record(row) for row in rows]

    # --- metrics and storage classes -----------------------------------------------------

    def metrics(
        self, store_id: str, study: str | None = None, series: str | None = None
    ) -> Metrics:
        """Counts and byte sizes of the ACTIVE instances of a store, study or series."""
        where, params = "store_id = ? AND state = ?", [store_id, ACTIVE]
        if study is not None:
            where, params = where + " AND study_uid = ?", [*params, study]
        if series is not None:
            where, params = where + " AND series_uid = ?", [*params, series]
        with self._connection() as conn:
            row = conn.execute(
                "SELECT COUNT(DISTINCT study_uid) AS studies,"
                " COUNT(DISTINCT study_uid || '/' || series_uid) AS series, COUNT(*) AS instances,"
                " COALESCE(SUM(metadata_size), 0) AS structured, COALESCE(SUM(size), 0) AS blob"
                f" FROM instances WHERE {where}",
                params,
            ).fetchone()
        return Metrics(
            study_count=int(row["studies"]),
            series_count=int(row["series"]),
            instance_count=int(row["instances"]),
            structured_bytes=int(row["structured"]),
            blob_bytes=int(row["blob"]),
        )

    def set_storage_class(
        self, store_id: str, keys: list[tuple[str, str, str]], storage_class: str, when: str
    ) -> int:
        """Record a storage class change on the ACTIVE instances among `keys`."""
        changed = 0
        with self._transaction() as conn:
            for study, series, sop in dict.fromkeys(keys):
                changed += conn.execute(
                    "UPDATE instances SET storage_class = ?, storage_class_time = ?"
                    f" WHERE {_KEY_WHERE} AND state = ?",
                    (storage_class, when, store_id, study, series, sop, ACTIVE),
                ).rowcount
        return changed

    def remove_instances(self, store_id: str, keys: list[tuple[str, str, str]]) -> int:
        """Delete these rows (any state); returns how many existed. Idempotent."""
        per_series: dict[tuple[str, str], list[int]] = {}
        with self._transaction() as conn:
            for study, series, sop in dict.fromkeys(keys):
                row = conn.execute(
                    f"DELETE FROM instances WHERE {_KEY_WHERE} RETURNING state",
                    (store_id, study, series, sop),
                ).fetchone()
                if row is not None:
                    counts = per_series.setdefault((study, series), [0, 0])
                    counts[0] += 1
                    counts[1] += row["state"] == ACTIVE
            self._count_removed(conn, store_id, per_series)
        return sum(total for total, _ in per_series.values())

    @staticmethod
    def _count_removed(
        conn: sqlite3.Connection, store_id: str, per_series: dict[tuple[str, str], list[int]]
    ) -> None:
        """Decrement counts; drop rows that lost their last instance; end finished deletes."""
        per_study: dict[str, list[int]] = {}
        for (study, series), (total, active) in per_series.items():
            _decrement(conn, "series", (store_id, study, series), total, active)
            counts = per_study.setdefault(study, [0, 0])
            counts[0] += total
            counts[1] += active
        for study, (total, active) in per_study.items():
            if _decrement(conn, "studies", (store_id, study), total, active):
                conn.execute(
                    "DELETE FROM study_name_tokens WHERE store_id = ? AND study_uid = ?"
                    " AND NOT EXISTS (SELECT 1 FROM studies WHERE store_id = ? AND study_uid = ?)",
                    (store_id, study, store_id, study),
                )

    # --- search --------------------------------------------------------------------------

    def search(self, store_id: str, query: SearchQuery) -> list[DicomJson]:
        """Matching ACTIVE results of the query's level in a stable order, offset then limit.

        Computed attributes (ModalitiesInStudy, NumberOf...) are added when the query names or
        matches them: before filtering those that Python matches, after it the others.
        """
        if query.limit <= 0:
            return []
        plan = _plan(store_id, query)
        computed = attributes.computed_tags(query)
        early = computed & {condition.tag for condition in plan.residual}
        with self._connection() as conn:
            if plan.residual:
                results = self._filtered(conn, store_id, plan, query, early)
            else:
                ids = [
                    row[0]
                    for row in conn.execute(
                        f"{plan.sql()} LIMIT ? OFFSET ?", (*plan.params, query.limit, query.offset)
                    )
                ]
                results = self._load(conn, query.level, ids)
            _add_computed(conn, store_id, results, computed - early)
        return results

    def _filtered(
        self,
        conn: sqlite3.Connection,
        store_id: str,
        plan: _Plan,
        query: SearchQuery,
        computed: frozenset[str],
    ) -> list[DicomJson]:
        """Stream candidates in order, keep those `matches` accepts, then apply offset/limit."""
        results: list[DicomJson] = []
        skipped = 0
        cursor = conn.execute(plan.sql(), plan.params)
        while len(results) < query.limit:
            ids = [row[0] for row in cursor.fetchmany(_CHUNK)]
            if not ids:
                break
            loaded = self._load(conn, query.level, ids)
            _add_computed(conn, store_id, loaded, computed)
            for result in loaded:
                if not matches_all(plan.residual, result):
                    continue
                if skipped < query.offset:
                    skipped += 1
                elif len(results) < query.limit:
                    results.append(result)
        cursor.close()
        return results

    def _load(self, conn: sqlite3.Connection, level: Level, ids: Sequence[int]) -> list[DicomJson]:
        """Merged DICOM JSON of the rows with these ids, in the order of `ids`."""
        loaded: dict[int, DicomJson] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ", ".join("?" * len(chunk))
            loaded.update(_LOADERS[level](conn, marks, chunk))
        return [loaded[row_id] for row_id in ids if row_id in loaded]


def _count_study(
    conn: sqlite3.Connection, record: InstanceRecord, study: DicomJson, active: int
) -> None:
    """Count the instance in its study row; the first instance sets attributes and tokens."""
    columns = [first(study.get(tag), vr) for tag, (_, vr) in STUDY_SEARCH_FIELDS.items()]
    names = ", ".join(column for column, _ in STUDY_SEARCH_FIELDS.values())
    count = conn.execute(
        f"INSERT INTO studies (store_id, study_uid, attrs, {names},"
        " instance_count, active_count) VALUES (?, ?, ?, ?, ?, ?, ?, ?, 1, ?)"
        " ON CONFLICT (store_id, study_uid) DO UPDATE SET"
        " instance_count = instance_count + 1,"
        " active_count = active_count + excluded.active_count"
        " RETURNING instance_count",
        (record.store_id, record.study_uid, json.dumps(study), *columns, active),
    ).fetchone()[0]
    if count == 1:
        tokens = stored_name_tokens(study.get(PATIENT_NAME))
        conn.executemany(
            "INSERT OR IGNORE INTO study_name_tokens (store_id, token, study_uid) VALUES (?, ?, ?)",
            [(record.store_id, token, record.study_uid) for token in tokens],
        )


def _first_uid(result: DicomJson, tag: str) -> str:
    return str(result[tag]["Value"][0])


_FigureKey = str | tuple[str, str]  # a study UID, or (study UID, series UID)


def _add_computed(
    conn: sqlite3.Connection, store_id: str, results: list[DicomJson], tags: frozenset[str]
) -> None:
    """Add the computed attributes named in `tags` to each result, in place."""
    if not tags or not results:
        return
    studies = sorted({_first_uid(result, STUDY_UID) for result in results})
    figures: dict[_FigureKey, DicomJson] = {}
    for start in range(0, len(studies), _CHUNK):
        chunk = studies[start : start + _CHUNK]
        figures.update(_study_figures(conn, store_id, chunk, tags))
        if SERIES_INSTANCE_COUNT in tags:
            figures.update(_series_figures(conn, store_id, chunk))
    for result in results:
        study = _first_uid(result, STUDY_UID)
        result.update(figures.get(study, {}))
        if SERIES_INSTANCE_COUNT in tags:
            result.update(figures.get((study, _first_uid(result, SERIES_UID)), {}))


def _study_figures(
    conn: sqlite3.Connection, store_id: str, studies: list[str], tags: frozenset[str]
) -> dict[_FigureKey, DicomJson]:
    """Computed study attributes, study UID -> {tag: element}, from the visible rows only."""
    figures: dict[_FigureKey, DicomJson] = {study: {} for study in studies}
    marks = ", ".join("?" * len(studies))
    if tags & {MODALITIES_IN_STUDY, STUDY_SERIES_COUNT}:
        _add_series_facts(conn, (store_id, *studies), marks, tags, figures)
    if STUDY_INSTANCE_COUNT in tags:
        rows = conn.execute(
            "SELECT study_uid, active_count FROM studies"
            f" WHERE store_id = ? AND study_uid IN ({marks})",
            (store_id, *studies),
        )
        for row in rows:
            figures[row["study_uid"]][STUDY_INSTANCE_COUNT] = number_element(row["active_count"])
    if SOP_CLASSES_IN_STUDY in tags:
        _add_sop_classes(conn, (store_id, *studies), marks, figures)
    return figures


def _add_series_facts(
    conn: sqlite3.Connection,
    params: tuple[str, ...],
    marks: str,
    tags: frozenset[str],
    figures: dict[_FigureKey, DicomJson],
) -> None:
    """ModalitiesInStudy and NumberOfStudyRelatedSeries, from the visible series."""
    modalities: dict[_FigureKey, set[str]] = {study: set() for study in figures}
    counts: Counter[_FigureKey] = Counter()
    rows = conn.execute(
        "SELECT study_uid, modality FROM series"
        f" WHERE store_id = ? AND active_count > 0 AND study_uid IN ({marks})",
        params,
    )
    for row in rows:
        counts[row["study_uid"]] += 1
        if row["modality"]:
            modalities[row["study_uid"]].add(row["modality"])
    for study, found in figures.items():
        if MODALITIES_IN_STUDY in tags:
            found[MODALITIES_IN_STUDY] = list_element("CS", modalities[study])
        if STUDY_SERIES_COUNT in tags:
            found[STUDY_SERIES_COUNT] = number_element(counts[study])


def _add_sop_classes(
    conn: sqlite3.Connection,
    params: tuple[str, ...],
    marks: str,
    figures: dict[_FigureKey, DicomJson],
) -> None:
    """SOPClassesInStudy, from the ACTIVE instances (one index range per study)."""
    classes: dict[_FigureKey, set[str]] = {study: set() for study in figures}
    rows = conn.execute(
        f"SELECT DISTINCT study_uid, sop_class_uid FROM instances WHERE store_id = ?"
        f" AND state = '{ACTIVE}' AND study_uid IN ({marks})",
        params,
    )
    for row in rows:
        classes[row["study_uid"]].add(row["sop_class_uid"])
    for study, found in figures.items():
        found[SOP_CLASSES_IN_STUDY] = list_element("UI", classes[study])


def _series_figures(
    conn: sqlite3.Connection, store_id: str, studies: list[str]
) -> dict[_FigureKey, DicomJson]:
    """NumberOfSeriesRelatedInstances, (study UID, series UID) -> {tag: element}."""
    rows = conn.execute(
        "SELECT study_uid, series_uid, active_count FROM series WHERE store_id = ?"
        f" AND study_uid IN ({', '.join('?' * len(studies))})",
        (store_id, *studies),
    )
    return {
        (row["study_uid"], row["series_uid"]): {
            SERIES_INSTANCE_COUNT: number_element(row["active_count"])
        }
        for row in rows
    }


def _pin_planner_stats(conn: sqlite3.Connection) -> None:
    """Replace whatever statistics the file holds by `_PLANNER_STATS` (see there why)."""
    exists = conn.execute(
        "SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'sqlite_stat1'"
    ).fetchone()
    if exists is None:
        conn.execute("ANALYZE stores")  # creates sqlite_stat1; the stores table is tiny
    conn.execute("DELETE FROM sqlite_stat1")
    conn.executemany("INSERT INTO sqlite_stat1 (tbl, idx, stat) VALUES (?, ?, ?)", _PLANNER_STATS)


def _decrement(
    conn: sqlite3.Connection, table: str, key: tuple[str, ...], total: int, active: int
) -> bool:
    """Subtract removed rows from a study/series row; True if the row was dropped."""
    where = "store_id = ? AND study_uid = ?" + (" AND series_uid = ?" if len(key) == 3 else "")
    conn.execute(
        f"UPDATE {table} SET instance_count = instance_count - ?,"
        f" active_count = active_count - ? WHERE {where}",
        (total, active, *key),
    )
    dropped = conn.execute(
        f"DELETE FROM {table} WHERE {where} AND instance_count <= 0", key
    ).rowcount
    # A purge is over once no DELETING row is left (instances stored meanwhile stay visible).
    conn.execute(
        f"UPDATE {table} SET deleting = 0 WHERE {where} AND deleting = 1"
        " AND instance_count = active_count",
        key,
    )
    return dropped > 0


def _load_studies(
    conn: sqlite3.Connection, marks: str, ids: Sequence[int]
) -> Iterator[tuple[int, DicomJson]]:
    for row in conn.execute(f"SELECT id, attrs FROM studies WHERE id IN ({marks})", ids):
        yield row["id"], json.loads(row["attrs"])


def _load_series(
    conn: sqlite3.Connection, marks: str, ids: Sequence[int]
) -> Iterator[tuple[int, DicomJson]]:
    rows = conn.execute(
        f"SELECT se.id, se.attrs, st.attrs AS study FROM series se {_JOIN_STUDY[Level.SERIES]}"
        f" WHERE se.id IN ({marks})",
        ids,
    )
    # Parents win on shared tags, so a result shows the values its parents matched on.
    for row in rows:
        yield row["id"], {**json.loads(row["attrs"]), **json.loads(row["study"])}


def _load_instances(
    conn: sqlite3.Connection, marks: str, ids: Sequence[int]
) -> Iterator[tuple[int, DicomJson]]:
    rows = conn.execute(
        f"SELECT i.id, i.sop_uid, i.metadata, se.attrs AS series, st.attrs AS study"
        f" FROM instances i {_JOIN_SERIES} {_JOIN_STUDY[Level.INSTANCE]}"
        f" WHERE i.id IN ({marks})",
        ids,
    )
    # Instances of a chunk share a few series and studies: parse each JSON text once (the
    # results then share element dicts, which nothing downstream mutates).
    parsed: dict[str, DicomJson] = {}
    for row in rows:
        result = _unpack(row["metadata"])
        result[SOP_UID] = uid_element(row["sop_uid"])
        for text in (row["series"], row["study"]):
            if text not in parsed:
                parsed[text] = json.loads(text)
            result.update(parsed[text])
        yield row["id"], result


_LOADERS = {
    Level.STUDY: _load_studies,
    Level.SERIES: _load_series,
    Level.INSTANCE: _load_instances,
}
