"""HTTP access to a store (this one or Google's): resource URLs, JSON calls, plain errors."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

from shared.domain.identifiers import DatasetName, StoreName
from shared.errors import InvalidArgument

USER_AGENT = "dicomstore-cli/0.1"
CONNECT_TIMEOUT = 10.0
JSON_READ_TIMEOUT = 60.0
# Statuses worth asking again: overload, or a front end that lost its backend for a moment.
TRANSIENT_STATUSES = frozenset({429, 500, 502, 503, 504})
# google.rpc.Code names, for errors that carry only the number (operation errors do).
RPC_CODE_NAMES = {
    0: "OK",
    1: "CANCELLED",
    2: "UNKNOWN",
    3: "INVALID_ARGUMENT",
    4: "DEADLINE_EXCEEDED",
    5: "NOT_FOUND",
    6: "ALREADY_EXISTS",
    7: "PERMISSION_DENIED",
    8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION",
    10: "ABORTED",
    11: "OUT_OF_RANGE",
    12: "UNIMPLEMENTED",
    13: "INTERNAL",
    14: "UNAVAILABLE",
    15: "DATA_LOSS",
    16: "UNAUTHENTICATED",
}
_ERRNO_RE = re.compile(r"\[Errno -?\d+\] [^'\")]+|timed out|Name or service not known")


class CliError(Exception):
    """A failure the command reports in one line and ends with exit code 2."""


class ApiError(CliError):
    """The server answered with an error status (Google's envelope when it has one)."""

    def __init__(self, url: str, http_status: int, status: str, message: str) -> None:
        super().__init__(f"{status} (HTTP {http_status}) from {url}: {message}")
        self.url = url
        self.http_status = http_status
        self.status = status
        self.message = message

    @property
    def transient(self) -> bool:
        return self.http_status in TRANSIENT_STATUSES

    @classmethod
    def from_response(cls, response: requests.Response) -> ApiError:
        status, message = _error_of(response)
        return cls(response.url, response.status_code, status, message)


class Unreachable(CliError):
    """No HTTP answer at all: refused, unresolvable, timed out or reset."""

    def __init__(self, url: str, exc: Exception) -> None:
        super().__init__(f"cannot reach {url}: {connection_reason(exc)}")
        self.url = url


def connection_reason(exc: BaseException) -> str:
    """The useful end of a requests/urllib3 connection error chain, e.g. 'Connection refused'."""
    if isinstance(exc, requests.Timeout):
        return "timed out"
    match = _ERRNO_RE.search(str(exc))
    return match.group(0).strip() if match else type(exc).__name__


def _error_of(response: requests.Response) -> tuple[str, str]:
    try:
        error = response.json().get("error")
    except ValueError:
        error = None
    if isinstance(error, dict):
        status = str(error.get("status") or RPC_CODE_NAMES.get(error.get("code", -1), ""))
        return status or response.reason or "ERROR", str(error.get("message", ""))
    text = " ".join(response.text.split())
    return response.reason or "ERROR", text[:300] or "(empty body)"


@dataclass(frozen=True)
class Api:
    """A base URL (`https://healthcare.googleapis.com` or this store's) and an optional token."""

    base_url: str
    token: str | None = None

    def url(self, resource: str) -> str:
        return f"{self.base_url}/v1/{resource.lstrip('/')}"

    def session(self) -> requests.Session:
        """A keep-alive session that retries GETs on overload, never on a refused connection."""
        session = requests.Session()
        session.headers["User-Agent"] = USER_AGENT
        if self.token:
            session.headers["Authorization"] = f"Bearer {self.token}"
        retry = Retry(
            total=3,
            connect=0,
            read=0,
            status=3,
            backoff_factor=0.5,
            status_forcelist=sorted(TRANSIENT_STATUSES),
            allowed_methods=frozenset({"GET"}),
            raise_on_status=False,
        )
        adapter = HTTPAdapter(max_retries=retry)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        return session

    def call(
        self,
        session: requests.Session,
        method: str,
        resource: str,
        *,
        params: dict[str, str] | None = None,
        body: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """One JSON request; ApiError for an error status, Unreachable for no answer."""
        url = self.url(resource)
        try:
            response = session.request(
                method,
                url,
                params=params,
                json=body,
                timeout=(CONNECT_TIMEOUT, JSON_READ_TIMEOUT),
            )
        except requests.RequestException as exc:
            raise Unreachable(url, exc) from None
        if response.status_code >= 400:
            raise ApiError.from_response(response)
        try:
            payload = response.json() if response.content.strip() else {}
        except ValueError:
            raise CliError(f"{url} answered {response.status_code} with a non-JSON body") from None
        if not isinstance(payload, dict):
            raise CliError(f"{url} answered with JSON that is not an object")
        return payload


@dataclass(frozen=True)
class Endpoint:
    """Where the commands point: the API, and the store given or implied by the URL."""

    api: Api
    store: StoreName | None


def resolve_endpoint(url: str, token: str | None, store: str | None) -> Endpoint:
    """Accept a bare base URL or a pasted `.../v1/{store}/dicomWeb` URL; `store` wins."""
    parts = urlsplit(url.strip())
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise CliError(f"--url must be an http(s) URL, got {url!r}")
    path = parts.path.rstrip("/")
    base_path, marker, resource = path.partition("/v1/")
    implied = None
    if marker:
        store_path = resource.split("/dicomWeb", 1)[0]
        implied = store_path if store_path.count("/") == 7 else None
    base_url = f"{parts.scheme}://{parts.netloc}{base_path}"
    chosen = store or implied
    return Endpoint(Api(base_url, token or None), parse_store(chosen) if chosen else None)


def parse_store(name: str) -> StoreName:
    try:
        return StoreName.parse(name)
    except InvalidArgument as exc:
        raise CliError(
            f"{exc.message}: expected projects/P/locations/L/datasets/D/dicomStores/S"
        ) from None


def parse_dataset(name: str) -> DatasetName:
    try:
        return DatasetName.parse(name)
    except InvalidArgument as exc:
        raise CliError(f"{exc.message}: expected projects/P/locations/L/datasets/D") from None


def operation_name(name: str, dataset: DatasetName | None) -> str:
    """`projects/.../datasets/D/operations/ID`, from that or from a bare ID and the dataset."""
    cleaned = name.strip().strip("/")
    cleaned = cleaned.removeprefix("v1/")
    head, marker, operation_id = cleaned.rpartition("/operations/")
    if marker:
        if not operation_id or "/" in operation_id:
            raise CliError(f"invalid operation name {name!r}")
        return f"{parse_dataset(head).path}/operations/{operation_id}"
    if not cleaned or "/" in cleaned:
        raise CliError(
            f"invalid operation name {name!r}: give projects/.../operations/ID or a bare ID"
        )
    if dataset is None:
        raise CliError(f"operation {name!r} is a bare ID: give --dataset or --store as well")
    return dataset.operation(cleaned)
