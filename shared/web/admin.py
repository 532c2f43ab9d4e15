"""Control plane: DICOM stores and long-running operations under a dataset."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from flask import Response

from shared.domain.identifiers import DatasetName, StoreName
from shared.errors import InvalidArgument, NotFound, PayloadTooLarge
from shared.service import exports, imports, storage, stores
from shared.web import responses

if TYPE_CHECKING:
    from shared.web.app import Call

DEFAULT_OPERATIONS_PAGE = 100
MAX_OPERATIONS_PAGE = 1000
# Google limits every DICOM method but STOW to 10 MB of request content.
MAX_REQUEST_BYTES = 10 * 1000 * 1000


def stores_collection(call: Call, dataset: DatasetName) -> Response:
    from shared.web.app import int_arg, only

    only(call, "GET", "POST")
    if call.method == "POST":
        body = json_body(call)
        record = stores.create_store(
            call.services, dataset, call.request.args.get("dicomStoreId"), body
        )
        return responses.json_response(record.to_json())
    records, token = stores.list_stores(
        call.services, dataset, int_arg(call, "pageSize"), call.request.args.get("pageToken")
    )
    payload: dict[str, Any] = {"dicomStores": [r.to_json() for r in records]}
    if token:
        payload["nextPageToken"] = token
    return responses.json_response(payload)


def store_resource(call: Call, name: StoreName, verb: str) -> Response:
    from shared.web.app import only

    if verb == "getDICOMStoreMetrics":
        only(call, "GET")
        record = stores.get_store(call.services, name)
        return responses.json_response(storage.store_metrics(call.services, record))
    if verb == "setBlobStorageSettings":
        only(call, "POST")
        record = stores.get_store(call.services, name)
        operation = storage.start_set_storage_class(call.services, record, json_body(call))
        return responses.json_response({"name": operation.name})
    if verb == "import":
        only(call, "POST")
        record = stores.get_store(call.services, name)
        operation = imports.start_import(call.services, record, json_body(call))
        return responses.json_response({"name": operation.name})
    if verb == "export":
        only(call, "POST")
        record = stores.get_store(call.services, name)
        operation = exports.start_export(call.services, record, json_body(call))
        return responses.json_response({"name": operation.name})
    if verb:
        raise NotFound(f"unknown method :{verb} on a DICOM store")
    only(call, "GET", "DELETE", "PATCH")
    if call.method == "PATCH":
        update_mask = call.request.args.get("updateMask")
        record = stores.patch_store(call.services, name, update_mask, json_body(call))
        return responses.json_response(record.to_json())
    if call.method == "DELETE":
        stores.delete_store(call.services, name)
        return responses.json_response({})
    return responses.json_response(stores.get_store(call.services, name).to_json())


def operations(call: Call, dataset: DatasetName, tail: list[str]) -> Response:
    from shared.web.app import int_arg, only

    store = call.services.operations
    if not tail:
        only(call, "GET")
        size = int_arg(call, "pageSize") or DEFAULT_OPERATIONS_PAGE
        if size < 0:
            raise InvalidArgument("pageSize must not be negative")
        page, token = store.list_operations(
            dataset.path, min(size, MAX_OPERATIONS_PAGE), call.request.args.get("pageToken")
        )
        payload: dict[str, Any] = {"operations": [op.to_json() for op in page]}
        if token:
            payload["nextPageToken"] = token
        return responses.json_response(payload)
    if len(tail) != 1:
        raise NotFound(f"unknown path {call.request.path!r}")
    operation_id, _, verb = tail[0].partition(":")
    if not operation_id.isdigit():
        raise NotFound(f"operation {operation_id!r} not found")
    name = dataset.operation(operation_id)
    if verb == "cancel":
        only(call, "POST")
        store.request_cancel(name)
        return responses.json_response({})
    if verb:
        raise NotFound(f"unknown method :{verb} on an operation")
    only(call, "GET")
    return responses.json_response(store.get(name).to_json())


def json_body(call: Call) -> dict[str, Any]:
    """The JSON object of a control-plane request, bounded like Google (10 MB)."""
    length = call.request.content_length or 0
    if length > MAX_REQUEST_BYTES:
        raise PayloadTooLarge(f"request body of {length} bytes exceeds the 10 MB limit")
    raw = call.request.stream.read(MAX_REQUEST_BYTES + 1)
    if len(raw) > MAX_REQUEST_BYTES:
        raise PayloadTooLarge("request body exceeds the 10 MB limit")
    if not raw.strip():
        return {}
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise InvalidArgument("the request body is not valid JSON") from None
    if not isinstance(body, dict):
        raise InvalidArgument("the request body must be a JSON object")
    return body
