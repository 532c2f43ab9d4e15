"""One STOW-RS request of several files, streamed from disk, and its per-file outcome."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import requests

from shared.cli_ops.api import CONNECT_TIMEOUT, TRANSIENT_STATUSES, Api, ApiError, connection_reason
from shared.cli_ops.discover import DicomFile
from shared.domain.identifiers import StoreName

CHUNK_BYTES = 1 << 20
# The store answers only after spooling and storing every part: allow a slow disk.
STOW_READ_TIMEOUT = 600.0
# Statuses that no retry or smaller request can fix: stop the whole upload.
FATAL_STATUSES = frozenset({401, 403, 404})
REFERENCED_SOP_SEQUENCE = "00081199"
FAILED_SOP_SEQUENCE = "00081198"
REFERENCED_SOP_INSTANCE_UID = "00081155"
FAILURE_REASON = "00081197"
FAILURE_DETAIL_JSON = "00091097"  # Google's private FailureDetail in the JSON form


class FileChanged(Exception):
    """A file vanished or shrank after listing: the request's length would lie."""

    def __init__(self, path: Path, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason


@dataclass(frozen=True)
class FileOutcome:
    """What the store said about one file."""

    file: DicomFile
    stored: bool
    message: str = ""


class MultipartBody:
    """`multipart/related; type="application/dicom"` read lazily from the files.

    It has a length, so requests sends Content-Length instead of chunks; iterating again
    (a retry) reopens the files. `on_bytes` hears of every chunk sent, negative on a rewind.
    """

    def __init__(self, files: list[DicomFile], on_bytes: Callable[[int], None]) -> None:
        self.files = files
        self.on_bytes = on_bytes
        self.boundary = uuid.uuid4().hex
        self.part_head = f"--{self.boundary}\r\nContent-Type: application/dicom\r\n\r\n".encode(
            "ascii"
        )
        self.tail = f"--{self.boundary}--\r\n".encode("ascii")
        self.length = sum(len(self.part_head) + f.size + 2 for f in files) + len(self.tail)
        self.sent = 0

    @property
    def content_type(self) -> str:
        return f'multipart/related; type="application/dicom"; boundary={self.boundary}'

    def __len__(self) -> int:
        return self.length

    def __iter__(self) -> Iterator[bytes]:
        self.rewind()
        for item in self.files:
            yield self.part_head
            yield from self._content(item)
            yield b"\r\n"
        yield self.tail

    def _content(self, item: DicomFile) -> Iterator[bytes]:
        # Not OSError: urllib3 would take a local read error for a broken connection.
        try:
            with item.path.open("rb") as handle:
                left = item.size
                while left:
                    chunk = handle.read(min(CHUNK_BYTES, left))
                    if not chunk:
                        raise FileChanged(item.path, "the file shrank after it was listed")
                    left -= len(chunk)
                    self.sent += len(chunk)
                    self.on_bytes(len(chunk))
                    yield chunk
        except OSError as exc:
            raise FileChanged(item.path, f"unreadable: {exc.strerror or exc}") from None

    def rewind(self) -> None:
        if self.sent:
            self.on_bytes(-self.sent)
            self.sent = 0


@dataclass(frozen=True)
class StowTarget:
    """Where and how to store: the endpoint, the storage class, and the retry budget."""

    api: Api
    store: StoreName
    storage_class: str | None
    retries: int

    @property
    def url(self) -> str:
        return self.api.url(f"{self.store.path}/dicomWeb/studies")


def send(
    target: StowTarget,
    session: requests.Session,
    files: list[DicomFile],
    on_bytes: Callable[[int], None],
) -> list[FileOutcome]:
    """Store the files; retry overload and lost connections, split a refused batch.

    Retrying is safe because an identical re-upload counts as stored. ApiError escapes only
    for the statuses of FATAL_STATUSES.
    """
    body = MultipartBody(files, on_bytes)
    headers = {"Content-Type": body.content_type, "Accept": "application/dicom+json"}
    if target.storage_class:
        headers["Storage-Class"] = target.storage_class
    problem = ""
    for attempt in range(target.retries + 1):
        if attempt:
            time.sleep(min(2.0 ** (attempt - 1), 30.0))
        try:
            response = session.post(
                target.url, data=body, headers=headers, timeout=(CONNECT_TIMEOUT, STOW_READ_TIMEOUT)
            )
        except FileChanged as exc:
            body.rewind()
            others = [f for f in files if f.path != exc.path]
            changed = [FileOutcome(f, False, exc.reason) for f in files if f.path == exc.path]
            return changed + (send(target, session, others, on_bytes) if others else [])
        except requests.RequestException as exc:
            body.rewind()
            problem = f"cannot reach {target.url}: {connection_reason(exc)}"
            continue
        if response.status_code in TRANSIENT_STATUSES:
            body.rewind()
            problem = str(ApiError.from_response(response))
            continue
        return _outcomes(target, session, files, response, body, on_bytes)
    return [
        FileOutcome(f, False, f"{problem} (after {target.retries + 1} attempts)") for f in files
    ]


def _outcomes(
    target: StowTarget,
    session: requests.Session,
    files: list[DicomFile],
    response: requests.Response,
    body: MultipartBody,
    on_bytes: Callable[[int], None],
) -> list[FileOutcome]:
    status = response.status_code
    if status in FATAL_STATUSES:
        raise ApiError.from_response(response)
    if status not in (200, 409):
        if len(files) > 1:
            # One bad part can spoil a whole request: find it by sending the files one by one.
            body.rewind()
            return [o for f in files for o in send(target, session, [f], on_bytes)]
        return [FileOutcome(files[0], False, str(ApiError.from_response(response)))]
    try:
        payload = response.json()
    except ValueError:
        payload = {}
    return match_outcomes(files, payload if isinstance(payload, dict) else {}, status)


def match_outcomes(
    files: list[DicomFile], payload: dict[str, Any], status: int
) -> list[FileOutcome]:
    """Pair response items with files by SOP Instance UID.

    Items whose UID names no file of the request (a part too damaged to have one) go to the
    files the response did not name, failures first; files still unnamed then follow the
    HTTP status (200: every instance was stored).
    """
    by_uid = {f.sop_uid: index for index, f in enumerate(files) if f.sop_uid}
    named: dict[int, FileOutcome] = {}
    spare: list[tuple[bool, str]] = []
    for sequence, stored in ((FAILED_SOP_SEQUENCE, False), (REFERENCED_SOP_SEQUENCE, True)):
        for item in _items(payload, sequence):
            message = "" if stored else _failure_text(item)
            index = by_uid.pop(_uid_of(item), None)
            if index is None:
                spare.append((stored, message))
            else:
                named[index] = FileOutcome(files[index], stored, message)
    outcomes: list[FileOutcome] = []
    for index, file in enumerate(files):
        known = named.get(index)
        if known is None and spare:
            stored, message = spare.pop(0)
            known = FileOutcome(file, stored, message)
        elif known is None:
            message = "" if status == 200 else "HTTP 409 and not named in the response"
            known = FileOutcome(file, status == 200, message)
        outcomes.append(known)
    return outcomes


def _items(payload: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    values = (payload.get(tag) or {}).get("Value") or []
    return [v for v in values if isinstance(v, dict)]


def _uid_of(item: dict[str, Any]) -> str:
    values = (item.get(REFERENCED_SOP_INSTANCE_UID) or {}).get("Value") or [""]
    return str(values[0])


def _failure_text(item: dict[str, Any]) -> str:
    reason = ((item.get(FAILURE_REASON) or {}).get("Value") or ["?"])[0]
    detail = ((item.get(FAILURE_DETAIL_JSON) or {}).get("Value") or [""])[0]
    return f"FailureReason {reason}" + (f": {detail}" if detail else "")
