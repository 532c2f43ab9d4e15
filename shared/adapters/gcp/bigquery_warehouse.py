"""Warehouse on BigQuery: one load job from Cloud Storage per export, as Google's export does."""

from __future__ import annotations

import concurrent.futures
import logging
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, cast

from google.api_core import exceptions as google_exceptions
from google.auth import exceptions as auth_exceptions

from shared.errors import (
    ConfigurationError,
    Conflict,
    DicomStoreError,
    InvalidArgument,
    NotFound,
    ResourceExhausted,
    Unavailable,
)
from shared.ports.warehouse import (
    Schema,
    TableRef,
    WriteDisposition,
    canonical_type,
    normalize_schema,
    parse_source_uri,
    schema_additions,
    validate_job_id,
)

if TYPE_CHECKING:
    from google.cloud.bigquery import Client, LoadJob, LoadJobConfig, SchemaField, Table

logger = logging.getLogger(__name__)

JOB_TIMEOUT = 600.0  # seconds to wait for one load job; an export of millions of rows fits


def make_bigquery_client(project: str | None = None, *, endpoint: str | None = None) -> Client:
    """A BigQuery client; `endpoint` (e.g. http://127.0.0.1:9050) targets an emulator."""
    from google.cloud.bigquery import Client  # heavy: imported only when BigQuery is used

    if endpoint is None:
        return Client(project=project)
    from google.api_core.client_options import ClientOptions
    from google.auth.credentials import AnonymousCredentials

    return Client(
        project=project or "local",
        credentials=AnonymousCredentials(),
        client_options=ClientOptions(api_endpoint=endpoint),
    )


class BigQueryWarehouse:
    """Tables in BigQuery, loaded by `load_table_from_uri` jobs reading NDJSON in Cloud Storage.

    The table is read once before the job is submitted, so that a missing dataset (NotFound),
    WRITE_EMPTY into rows (Conflict) and a schema dropping or retyping a column
    (InvalidArgument) fail at once with a clear message. The job enforces the same rules
    again, so a concurrent change of the table is still caught.
    """

    def __init__(self, client: Client, *, timeout: float = JOB_TIMEOUT) -> None:
        self.client = client
        self.timeout = timeout

    def row_count(self, table: TableRef) -> int | None:
        with _api_errors(table):
            found = self._table(table)
        return None if found is None else int(found.num_rows or 0)

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
        if not sources:
            raise InvalidArgument("a load needs at least one source URI")
        for uri in sources:
            parse_source_uri(uri)
        with _api_errors(table):
            earlier = None if job_id is None else self._succeeded_job(validate_job_id(job_id))
            if earlier is not None:
                logger.info("load job %s ran before; not repeated", job_id)
                return int(earlier.output_rows or 0)
            config = self._job_config(table, fields, disposition)
            try:
                job = self.client.load_table_from_uri(
                    sources,
                    _table_id(table),
                    job_config=config,
                    job_id=job_id,
                    job_id_prefix=None if job_id else "dicomstore-load-",
                )
            except google_exceptions.Conflict:
                # A concurrent call submitted the job with this id first: its result is ours.
                raced = None if job_id is None else self._succeeded_job(job_id)
                if raced is None:
                    raise
                return int(raced.output_rows or 0)
            job.result(timeout=self.timeout)
        rows = int(job.output_rows or 0)
        logger.info("load job %s put %d rows into %s (%s)", job.job_id, rows, table, disposition)
        return rows

    def query_rows(self, table: TableRef) -> list[dict[str, Any]]:
        with _api_errors(table):
            return [dict(row.items()) for row in self.client.list_rows(_table_id(table))]

    # --- steps ----------------------------------------------------------------------------
    def _succeeded_job(self, job_id: str) -> LoadJob | None:
        """The load job with this id once it has succeeded; None if there is none.

        A job still running is waited for. BigQuery refuses a second job with the same id, so
        the error of a failed one is raised again rather than retried under that id.
        """
        try:
            job = self.client.get_job(job_id)
        except google_exceptions.NotFound:
            return None
        job.result(timeout=self.timeout)
        return cast("LoadJob", job)

    def _table(self, table: TableRef) -> Table | None:
        try:
            return self.client.get_table(_table_id(table))
        except google_exceptions.NotFound:
            return None

    def _job_config(
        self, table: TableRef, fields: Schema, disposition: WriteDisposition
    ) -> LoadJobConfig:
        from google.cloud.bigquery import LoadJobConfig, SchemaField, SchemaUpdateOption

        write, options = disposition, list[str]()
        existing = self._table(table)
        if existing is None:
            self._require_dataset(table)
        elif disposition is WriteDisposition.WRITE_EMPTY and _has_rows(existing):
            raise Conflict(f"table {table} is not empty and writeDisposition is WRITE_EMPTY")
        elif disposition is not WriteDisposition.WRITE_TRUNCATE:
            additions = schema_additions(_schema_of(existing.schema), fields)
            # BigQuery adds fields only under WRITE_APPEND; an empty table was just seen empty.
            if additions or disposition is WriteDisposition.WRITE_APPEND:
                write = WriteDisposition.WRITE_APPEND
                options = [SchemaUpdateOption.ALLOW_FIELD_ADDITION]
        return LoadJobConfig(
            source_format="NEWLINE_DELIMITED_JSON",
            schema=[SchemaField.from_api_repr(field) for field in fields],
            write_disposition=write.value,
            create_disposition="CREATE_IF_NEEDED",
            schema_update_options=options,
        )

    def _require_dataset(self, table: TableRef) -> None:
        # Google's export creates a missing table but never its dataset: the user makes that.
        try:
            self.client.get_dataset(f"{table.project}.{table.dataset}")
        except google_exceptions.NotFound:
            raise NotFound(
                f"BigQuery dataset {table.project}.{table.dataset} does not exist"
            ) from None


def _table_id(table: TableRef) -> str:
    return f"{table.project}.{table.dataset}.{table.table}"


def _has_rows(table: Table) -> bool:
    # Streamed rows are not yet counted in num_rows while they sit in the streaming buffer.
    return bool(table.num_rows) or table.streaming_buffer is not None


def _schema_of(fields: Sequence[SchemaField]) -> Schema:
    result: Schema = []
    for field in fields:
        entry: dict[str, Any] = {
            "name": field.name,
            "type": canonical_type(field.field_type or ""),
            "mode": field.mode or "NULLABLE",
        }
        if field.fields:
            entry["fields"] = _schema_of(field.fields)
        result.append(entry)
    return result


@contextmanager
def _api_errors(table: TableRef) -> Iterator[None]:
    try:
        yield
    except DicomStoreError:
        raise
    except google_exceptions.GoogleAPICallError as exc:
        raise _translate(exc, table) from exc
    except (
        google_exceptions.RetryError,
        auth_exceptions.TransportError,
        concurrent.futures.TimeoutError,
        OSError,
    ) as exc:
        logger.warning("BigQuery did not answer for %s: %s", table, exc)
        raise Unavailable(f"BigQuery did not answer for {table}: {exc}") from exc


def _translate(exc: google_exceptions.GoogleAPICallError, table: TableRef) -> DicomStoreError:
    # A failed job's exception carries the job's errors; the first ones say which row broke.
    details = "; ".join(str(error.get("message", "")) for error in (exc.errors or [])[:3])
    message = f"{table}: {exc.message}" + (f" ({details})" if details else "")
    if isinstance(exc, google_exceptions.NotFound):
        return NotFound(message)
    if isinstance(exc, google_exceptions.Conflict):
        return Conflict(message)
    if isinstance(exc, google_exceptions.BadRequest):
        return InvalidArgument(message)
    if isinstance(exc, google_exceptions.Forbidden):
        return ConfigurationError(f"not allowed to load into {message}")
    if isinstance(exc, google_exceptions.TooManyRequests):
        return ResourceExhausted(message)
    logger.warning("BigQuery failed for %s: %s", table, exc)
    return Unavailable(message)
