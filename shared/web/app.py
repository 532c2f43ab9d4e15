"""Routes Healthcare-API paths to the services and shapes their replies."""

from __future__ import annotations

import hmac
import logging
from collections.abc import Callable
from dataclasses import dataclass

from flask import Request, Response

from shared.domain.identifiers import DatasetName, StoreName
from shared.errors import (
    DicomStoreError,
    InvalidArgument,
    MethodNotAllowed,
    NotFound,
    Unauthenticated,
)
from shared.service.context import Services
from shared.web import admin, cors, dicomweb, responses

logger = logging.getLogger(__name__)

_VERSIONS = ("v1", "v1beta1")


@dataclass(frozen=True)
class Call:
    """One request as the handlers see it."""

    services: Services
    request: Request
    version: str
    base_url: str

    @property
    def method(self) -> str:
        return self.request.method

    def api_url(self, path: str) -> str:
        return f"{self.base_url}/{self.version}/{path}"


def handle(request: Request, services: Services) -> Response:
    """The whole HTTP surface; every failure becomes Google's error envelope."""
    settings = services.settings
    if cors.is_preflight(request):
        return cors.decorate(cors.preflight_response(request, settings), request, settings)
    try:
        _authenticate(request, services)
        response = _route(request, services)
    except Exception as exc:  # the one place exceptions become responses
        if not isinstance(exc, DicomStoreError):
            logger.exception("unhandled error on %s %s", request.method, request.path)
        response = responses.error_response(exc)
    return cors.decorate(response, request, settings)


def _authenticate(request: Request, services: Services) -> None:
    token = services.settings.auth_token
    if token is None:
        return
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
        raise Unauthenticated("a valid bearer token is required in the Authorization header")


def _route(request: Request, services: Services) -> Response:
    segments = [s for s in request.path.split("/") if s]
    if segments == ["healthz"]:
        return responses.json_response({"status": "ok"})
    if not segments or segments[0] not in _VERSIONS:
        raise NotFound(f"unknown path {request.path!r}: resources live under /v1/projects/...")
    base = services.settings.public_base_url or _request_base_url(request)
    call = Call(services, request, segments[0], base.rstrip("/"))
    rest = segments[1:]
    if len(rest) < 6 or rest[0::2][:3] != ["projects", "locations", "datasets"]:
        raise NotFound(f"unknown path {request.path!r}")
    dataset = DatasetName(rest[1], rest[3], rest[5])
    tail = rest[6:]
    if not tail:
        raise NotFound(f"unknown path {request.path!r}: datasets are implicit in this store")
    if tail[0] == "operations":
        return admin.operations(call, dataset, tail[1:])
    if tail[0] != "dicomStores":
        raise NotFound(f"unknown path {request.path!r}")
    if len(tail) == 1:
        return admin.stores_collection(call, dataset)
    store_id, _, verb = tail[1].partition(":")
    store_name = dataset.store(store_id)
    if len(tail) == 2:
        return admin.store_resource(call, store_name, verb)
    if tail[2] != "dicomWeb":
        raise NotFound(f"unknown path {request.path!r}")
    return dicomweb.route(call, store_name, tail[3:])


def _request_base_url(request: Request) -> str:
    """scheme://host[:port] that the client used, for RetrieveURL and BulkDataURI values.

    Some clients (dicomweb-client) send a Host header without the port even on a non-default
    port, which HTTP/1.1 forbids; without a proxy in front, the listening port is then the one
    the client used. Behind a proxy, set DICOMSTORE_PUBLIC_BASE_URL instead.
    """
    host = request.host
    port = str(request.environ.get("SERVER_PORT", ""))
    default = "443" if request.scheme == "https" else "80"
    proxied = "X-Forwarded-Host" in request.headers or "Forwarded" in request.headers
    if ":" not in host.rsplit("]", 1)[-1] and port.isdigit() and port != default and not proxied:
        host = f"{host}:{port}"
    return f"{request.scheme}://{host}"


def only(call: Call, *methods: str) -> None:
    """Raise 405 unless the request uses one of `methods`."""
    if call.method not in methods:
        raise MethodNotAllowed(
            f"method {call.method} is not allowed here; use {', '.join(methods)}"
        )


def int_arg(call: Call, name: str) -> int | None:
    raw = call.request.args.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise InvalidArgument(f"{name} must be an integer, got {raw!r}") from None


Handler = Callable[[Call, StoreName, list[str]], Response]
