"""`dicomstore import` and `export`: Google's ImportDicomData and ExportDicomData requests."""

from __future__ import annotations

import re
from typing import Any

import requests

from shared.cli_ops.api import Api, CliError
from shared.domain.identifiers import StoreName

STORAGE_CLASSES = ("STANDARD", "NEARLINE", "COLDLINE", "ARCHIVE")
WRITE_DISPOSITIONS = ("WRITE_EMPTY", "WRITE_TRUNCATE", "WRITE_APPEND")
_GCS_RE = re.compile(r"^gs://[^/]+(/.*)?$")
_BIGQUERY_RE = re.compile(r"^bq://[^.\s]+\.[^.\s]+\.[^.\s]+$")


def gcs_uri(value: str, what: str) -> str:
    if not _GCS_RE.match(value):
        raise CliError(f"{what} must be gs://BUCKET/..., got {value!r}")
    return value


def import_request(uri: str, storage_class: str | None) -> dict[str, Any]:
    """ImportDicomDataRequest: a gs:// URI with Google's wildcards, optionally a class."""
    body: dict[str, Any] = {"gcsSource": {"uri": gcs_uri(uri, "the import source")}}
    if storage_class:
        body["blobStorageSettings"] = {"blobStorageClass": storage_class}
    return body


def export_request(
    *,
    gcs_prefix: str | None,
    mime_type: str | None,
    bigquery_table: str | None,
    write_disposition: str | None,
    include_source_store: bool,
    filter_uri: str | None,
) -> dict[str, Any]:
    """ExportDicomDataRequest with exactly one destination and an optional filter file."""
    if (gcs_prefix is None) == (bigquery_table is None):
        raise CliError("give exactly one destination: --gcs or --bigquery")
    body: dict[str, Any] = {}
    if gcs_prefix is not None:
        if write_disposition or include_source_store:
            raise CliError("--write-disposition and --include-source-store go with --bigquery")
        destination = {"uriPrefix": gcs_uri(gcs_prefix, "--gcs")}
        if mime_type:
            destination["mimeType"] = mime_type
        body["gcsDestination"] = destination
    else:
        assert bigquery_table is not None
        if mime_type:
            raise CliError("--mime-type goes with --gcs")
        if not _BIGQUERY_RE.match(bigquery_table):
            raise CliError(f"--bigquery must be bq://PROJECT.DATASET.TABLE, got {bigquery_table!r}")
        table: dict[str, Any] = {"tableUri": bigquery_table}
        if write_disposition:
            table["writeDisposition"] = write_disposition
        if include_source_store:
            table["includeSourceStore"] = True
        body["bigqueryDestination"] = table
    if filter_uri:
        body["filterConfig"] = {"resourcePathsGcsUri": gcs_uri(filter_uri, "--filter")}
    return body


def start(
    api: Api, session: requests.Session, store: StoreName, verb: str, body: dict[str, Any]
) -> str:
    """POST `{store}:{verb}` and return the name of the operation it started."""
    answer = api.call(session, "POST", f"{store.path}:{verb}", body=body)
    name = answer.get("name")
    if not isinstance(name, str) or "/operations/" not in name:
        raise CliError(f"{store.path}:{verb} did not answer with an operation name: {answer}")
    return name
