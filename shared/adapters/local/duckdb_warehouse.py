"""Warehouse in a DuckDB file: the local stand-in for BigQuery export tables.

bq://PROJECT.DATASET.TABLE is table TABLE of schema DATASET in the file; PROJECT is ignored,
as one file serves one deployment. gs://BUCKET/OBJECT sources are files under
`gcs_root/BUCKET/OBJECT` (the directory the local exports write to). Unlike BigQuery, a
missing dataset is created, and DuckDB compares table names without regard to case.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

from shared.errors import Conflict, DicomStoreError, InvalidArgument, NotFound, Unavailable
from shared.ports.warehouse import (
    Schema,
    TableRef,
    WriteDisposition,
    normalize_schema,
    parse_source_uri,
    schema_additions,
    validate_job_id,
)

if TYPE_CHECKING:
    from duckdb.sqltypes import DuckDBPyType

logger = logging.getLogger(__name__)

_SCALARS = {
    "STRING": "VARCHAR",
    "INTEGER": "BIGINT",
    "FLOAT": "DOUBLE",
    "BOOLEAN": "BOOLEAN",
    "DATE": "DATE",
    "TIME": "TIME",
    "TIMESTAMP": "TIMESTAMP",
    "JSON": "JSON",
}
_FROM_DUCKDB = {duck: bq for bq, duck in _SCALARS.items()}
_JOBS = "main._dicomstore_load_jobs"
_MAX_ROW_BYTES = 100 * 1024 * 1024  # BigQuery's limit on one JSON row in a load job
# Errors DuckDB raises for a value it cannot convert: the data is wrong, not the backend.
_DATA_ERRORS = (
    duckdb.InvalidInputException,
    duckdb.ConversionException,
    duckdb.OutOfRangeException,
    duckdb.TypeMismatchException,
)


class DuckDBWarehouse:
    """One connection behind a lock; each load is one transaction (all or nothing).

    TIMESTAMP columns hold UTC without a zone: values are parsed with their offset and
    converted to UTC on the way in, and come out of `query_rows` as aware UTC datetimes.
    """

    def __init__(self, path: Path, gcs_root: Path) -> None:
        self.path = Path(path)
        self.gcs_root = Path(gcs_root)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._conn = duckdb.connect(str(self.path))
        # Offsets in TIMESTAMP strings are applied against UTC, whatever the host's zone.
        self._conn.execute("SET TimeZone = 'UTC'")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    # --- Warehouse ------------------------------------------------------------------------
    def row_count(self, table: TableRef) -> int | None:
        with self._lock, _backend_errors():
            return self._count(table) if self._exists(table) else None

    def load(
        self,
        table: TableRef,
        schema: Schema,
        sources: list[str],
        disposition: WriteDisposition,
        *,
        job_id: str | None = None,
    ) -> int:
        fields = normalize_schema(schema)
        disposition = WriteDisposition(disposition)
        if job_id is not None:
            validate_job_id(job_id)
            done = self._job_rows(job_id)
            if done is not None:
                logger.info("load job %s ran before (%d rows); not repeated", job_id, done)
                return done
        paths = self._source_paths(sources)
        rows = sum(_check_rows(path, uri, fields) for uri, path in paths)
        with self._lock, _backend_errors(), self._transaction():
            earlier = None if job_id is None else self._job_rows_locked(job_id)
            if earlier is not None:
                return earlier  # a concurrent call with the same id won while rows were checked
            self._prepare(table, fields, disposition)
            loaded = self._insert(table, fields, [path for _, path in paths])
            if job_id is not None:
                self._conn.execute(f"INSERT INTO {_JOBS} VALUES (?, ?)", [job_id, loaded])
        logger.info("loaded %d rows into %s (%s)", loaded, table, disposition.value)
        if loaded != rows:
            logger.warning("counted %d rows but DuckDB loaded %d into %s", rows, loaded, table)
        return loaded

    def query_rows(self, table: TableRef) -> list[dict[str, Any]]:
        with self._lock, _backend_errors():
            if not self._exists(table):
                raise NotFound(f"table {table} does not exist")
            fields = self._schema(table)
            result = self._conn.execute(f"SELECT * FROM {_ref(table)}").fetchall()
        return [_row_out(fields, row) for row in result]

    # --- load jobs ------------------------------------------------------------------------
    def _job_rows(self, job_id: str) -> int | None:
        with self._lock, _backend_errors():
            return self._job_rows_locked(job_id)

    def _job_rows_locked(self, job_id: str) -> int | None:
        # The ledger lives in DuckDB's own `main` schema; BigQuery keeps its jobs, we keep ours.
        self._conn.execute(
            f"CREATE TABLE IF NOT EXISTS {_JOBS} (job_id VARCHAR PRIMARY KEY, rows BIGINT)"
        )
        row = self._conn.execute(f"SELECT rows FROM {_JOBS} WHERE job_id = ?", [job_id]).fetchone()
        return None if row is None else int(row[0])

    # --- load steps -----------------------------------------------------------------------
    def _prepare(self, table: TableRef, fields: Schema, disposition: WriteDisposition) -> None:
        if not self._exists(table):
            self._conn.execute(f"CREATE SCHEMA IF NOT EXISTS {_quote(table.dataset)}")
            self._create(table, fields)
        elif disposition is WriteDisposition.WRITE_TRUNCATE:
            # BigQuery's WRITE_TRUNCATE takes the load's schema too, not only its rows.
            self._conn.execute(f"DROP TABLE {_ref(table)}")
            self._create(table, fields)
        elif disposition is WriteDisposition.WRITE_EMPTY and self._count(table):
            raise Conflict(f"table {table} is not empty and writeDisposition is WRITE_EMPTY")
        else:
            # An existing empty table under WRITE_EMPTY takes the load's new fields as well.
            self._widen(table, schema_additions(self._schema(table), fields))

    def _create(self, table: TableRef, fields: Schema) -> None:
        columns = ", ".join(f"{_quote(f['name'])} {_duck_type(f)}" for f in fields)
        self._conn.execute(f"CREATE TABLE {_ref(table)} ({columns})")

    def _widen(self, table: TableRef, additions: list[tuple[tuple[str, ...], Schema]]) -> None:
        existing = self._schema(table)
        for parent, new_fields in additions:
            prefix = _nested_path(existing, parent)
            for field in new_fields:
                column = ".".join([*prefix, _quote(field["name"])])
                self._conn.execute(
                    f"ALTER TABLE {_ref(table)} ADD COLUMN {column} {_duck_type(field)}"
                )
            logger.info("widened %s by %d fields", table, len(new_fields))

    def _insert(self, table: TableRef, fields: Schema, paths: list[Path]) -> int:
        # Read TIMESTAMPs as TIMESTAMPTZ so that offsets count; the insert casts them to UTC.
        columns = ", ".join(f"'{f['name']}': '{_duck_type(f, read=True)}'" for f in fields)
        row = self._conn.execute(
            f"INSERT INTO {_ref(table)} BY NAME SELECT * FROM read_json(?, "
            f"format = 'newline_delimited', maximum_object_size = {_MAX_ROW_BYTES}, "
            f"columns = {{{columns}}})",
            [[str(path) for path in paths]],
        ).fetchone()
        return int(row[0]) if row else 0

    # --- catalog --------------------------------------------------------------------------
    def _exists(self, table: TableRef) -> bool:
        row = self._conn.execute(
            "SELECT count(*) FROM information_schema.tables "
            "WHERE lower(table_schema) = lower(?) AND lower(table_name) = lower(?)",
            [table.dataset, table.table],
        ).fetchone()
        return bool(row and row[0])

    def _count(self, table: TableRef) -> int:
        row = self._conn.execute(f"SELECT count(*) FROM {_ref(table)}").fetchone()
        return int(row[0]) if row else 0

    def _schema(self, table: TableRef) -> Schema:
        relation = self._conn.sql(f"SELECT * FROM {_ref(table)} LIMIT 0")
        return [
            _field_of(name, kind)
            for name, kind in zip(relation.columns, relation.types, strict=True)
        ]

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        self._conn.execute("BEGIN TRANSACTION")
        try:
            yield
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # --- sources --------------------------------------------------------------------------
    def _source_paths(self, sources: list[str]) -> list[tuple[str, Path]]:
        if not sources:
            raise InvalidArgument("a load needs at least one source URI")
        paths: list[tuple[str, Path]] = []
        for uri in sources:
            paths.extend((uri, path) for path in self._resolve(uri))
        return paths

    def _resolve(self, uri: str) -> list[Path]:
        bucket, name = parse_source_uri(uri)  # refuses '..' and the like: nothing escapes
        if "*" not in name:
            path = self.gcs_root.joinpath(bucket, *name.split("/"))
            if not path.is_file():
                raise NotFound(f"source object {uri} does not exist")
            return [path]
        return self._glob(bucket, name, uri)

    def _glob(self, bucket: str, pattern: str, uri: str) -> list[Path]:
        # As in BigQuery's source URIs, '*' matches any characters, '/' included.
        regex = re.compile(".*".join(re.escape(part) for part in pattern.split("*")) + r"\Z")
        root = self.gcs_root / bucket
        found = sorted(
            path
            for path in root.rglob("*")
            if path.is_file() and regex.match(path.relative_to(root).as_posix())
        )
        if not found:
            raise NotFound(f"source URI {uri} matches no object")
        return found


# --- row checks: BigQuery's strictness, which DuckDB's JSON reader does not have -------------
def _check_rows(path: Path, uri: str, fields: Schema) -> int:
    count = 0
    with open(path, "rb") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)  # bytes: a bad UTF-8 sequence is a ValueError here too
                if not isinstance(row, dict):
                    raise ValueError("a row must be a JSON object")
                _check_record(row, fields, "")
            except (ValueError, RecursionError) as exc:
                raise InvalidArgument(f"{uri} line {number}: {exc}") from None
            count += 1
    return count


def _check_record(record: dict[str, Any], fields: Schema, parent: str) -> None:
    # Exact names: DuckDB's reader would silently read a differently-cased key as NULL.
    by_name = {field["name"]: field for field in fields}
    for key, value in record.items():
        field = by_name.get(key)
        if field is None:
            raise ValueError(f"no such field: {parent}{key}")
        if value is None:
            continue
        if field["mode"] == "REPEATED":
            if not isinstance(value, list):
                raise ValueError(f"field {parent}{key} is REPEATED but not an array")
            for item in value:
                _check_value(item, field, f"{parent}{key}")
        else:
            _check_value(value, field, f"{parent}{key}")


def _check_value(value: Any, field: dict[str, Any], path: str) -> None:
    kind = field["type"]
    if value is None:
        raise ValueError(f"field {path} holds a NULL inside an array")
    if kind == "RECORD":
        if not isinstance(value, dict):
            raise ValueError(f"field {path} is a RECORD but not an object")
        _check_record(value, field["fields"], f"{path}.")
    elif kind != "JSON" and isinstance(value, dict | list):
        raise ValueError(f"field {path} of type {kind} holds an object or array")
    elif kind == "INTEGER" and (
        isinstance(value, bool) or (isinstance(value, float) and not value.is_integer())
    ):
        raise ValueError(f"field {path} is INTEGER but holds {value!r}")


# --- types ----------------------------------------------------------------------------------
def _duck_type(field: dict[str, Any], *, read: bool = False) -> str:
    kind = field["type"]
    if kind == "RECORD":
        inner = ", ".join(
            f"{_quote(f['name'])} {_duck_type(f, read=read)}" for f in field["fields"]
        )
        base = f"STRUCT({inner})"
    elif kind == "TIMESTAMP" and read:
        base = "TIMESTAMPTZ"
    else:
        base = _SCALARS[kind]
    return f"{base}[]" if field["mode"] == "REPEATED" else base


def _field_of(name: str, kind: DuckDBPyType) -> dict[str, Any]:
    mode = "NULLABLE"
    if kind.id == "list":
        mode, kind = "REPEATED", _children(kind)[0][1]
    if kind.id == "struct":
        children = [_field_of(child, sub) for child, sub in _children(kind)]
        return {"name": name, "type": "RECORD", "mode": mode, "fields": children}
    # JSON is an alias of VARCHAR: only its printed name tells them apart.
    return {"name": name, "type": _FROM_DUCKDB.get(str(kind), "STRING"), "mode": mode}


def _children(kind: DuckDBPyType) -> list[tuple[str, DuckDBPyType]]:
    # Only DECIMAL and ENUM types have numbers or names as children; no warehouse column does.
    return [(name, sub) for name, sub in kind.children if not isinstance(sub, int | list)]


def _nested_path(existing: Schema, parent: tuple[str, ...]) -> list[str]:
    # DuckDB addresses a field inside a list of structs through the list's `element`.
    path: list[str] = []
    fields = existing
    for name in parent:
        field = next(f for f in fields if f["name"].lower() == name.lower())
        path.append(_quote(field["name"]))
        if field["mode"] == "REPEATED":
            path.append("element")
        fields = field["fields"]
    return path


def _row_out(fields: Schema, row: tuple[Any, ...]) -> dict[str, Any]:
    return {
        field["name"]: _value_out(field, value) for field, value in zip(fields, row, strict=True)
    }


def _value_out(field: dict[str, Any], value: Any) -> Any:
    if field["mode"] == "REPEATED":
        return [_scalar_out(field, item) for item in value or []]
    return None if value is None else _scalar_out(field, value)


def _scalar_out(field: dict[str, Any], value: Any) -> Any:
    kind = field["type"]
    if kind == "RECORD":
        return {f["name"]: _value_out(f, value.get(f["name"])) for f in field["fields"]}
    if kind == "JSON":
        return json.loads(value)
    if kind == "TIMESTAMP":
        return value.replace(tzinfo=dt.UTC)
    return value


# --- SQL helpers ----------------------------------------------------------------------------
def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _ref(table: TableRef) -> str:
    return f"{_quote(table.dataset)}.{_quote(table.table)}"


@contextmanager
def _backend_errors() -> Iterator[None]:
    try:
        yield
    except DicomStoreError:
        raise
    except _DATA_ERRORS as exc:
        raise InvalidArgument(f"rows do not fit the table schema: {exc}") from exc
    except (duckdb.Error, OSError) as exc:
        logger.exception("DuckDB warehouse failed")
        raise Unavailable(f"warehouse failure: {exc}") from exc
