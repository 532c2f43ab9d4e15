"""Response builders and the one table that maps the error tree to HTTP responses."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Sequence
from typing import Any

from flask import Response

from shared.dicom import multipart
from shared.errors import DicomStoreError

logger = logging.getLogger(__name__)

JSON = "application/json; charset=utf-8"
# No charset parameter: these types are UTF-8 by definition (PS3.18 8.7.3), and clients such
# as dicomweb-client compare the Content-Type of a store response as an exact string.
DICOM_JSON = "application/dicom+json"
DICOM_XML = "application/dicom+xml"


def error_response(exc: BaseException) -> Response:
    """Google's error envelope; anything outside the tree is a bug: 500 without details."""
    if isinstance(exc, DicomStoreError):
        status, code_name, message = exc.http_status, exc.grpc_status, exc.message
    else:
        logger.exception("unexpected error", exc_info=exc)
        status, code_name, message = 500, "INTERNAL", "internal error"
    body = {"error": {"code": status, "message": message, "status": code_name}}
    return Response(json.dumps(body), status=status, content_type=JSON)


def json_response(body: Any, status: int = 200, content_type: str = JSON) -> Response:
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")),
        status=status,
        content_type=content_type,
    )


def bytes_response(body: bytes, content_type: str, status: int = 200) -> Response:
    return Response(body, status=status, content_type=content_type)  # sets Content-Length


def stream_response(
    chunks: Iterable[bytes], content_type: str, length: int | None = None, status: int = 200
) -> Response:
    """Stream chunks; with a known length, announce it so the connection can be kept alive.

    Without a length the server falls back to chunked transfer coding (and waitress then
    closes the connection). With one, the stream is checked to produce exactly that many bytes.
    """
    body = iter(chunks) if length is None else _exactly(chunks, length)
    response = Response(body, status=status, content_type=content_type, direct_passthrough=True)
    if length is not None:
        response.headers["Content-Length"] = str(length)
    return response


# DCMWEB_CHUNKED: Google's dcmweb CLI finds part starts by looking for the boundary inside
# each piece of requests' iter_content(8192). With chunked transfer coding those pieces follow
# the HTTP chunks, so a part's delimiter+headers chunk arrives alone; with Content-Length they
# are fixed 8192-byte blocks and dcmweb would drop whole blocks of DICOM bytes. Multipart
# responses a dcmweb user can request (studies, series, instances, frames) therefore stay
# chunked (which costs the kept-alive connection); tests/integration checks it on the wire.


def multipart_response(
    parts: Iterable[tuple[dict[str, str], Iterable[bytes]]],
    part_type: str,
    extra: str = "",
    *,
    body_lengths: Sequence[int] | None = None,
) -> Response:
    """Stream a multipart/related body part by part (headers of each part in its own chunk).

    body_lengths, the exact byte count of each part's body, makes the response announce its
    Content-Length; the parts are then listed up front, so their bodies must be lazy iterables.
    """
    boundary = multipart.new_boundary()
    content_type = f'multipart/related; type="{part_type}"; boundary={boundary}{extra}'
    length = None
    if body_lengths is not None:
        parts = list(parts)
        headers = [part_headers for part_headers, _ in parts]
        length = multipart.multipart_length(headers, list(body_lengths), boundary)
    return stream_response(multipart.multipart_chunks(parts, boundary), content_type, length)


def multipart_bytes_response(
    parts: Sequence[tuple[dict[str, str], bytes]], part_type: str, extra: str = ""
) -> Response:
    """multipart_response for payloads already in memory: the length is always known."""
    return multipart_response(
        [(headers, [payload]) for headers, payload in parts],
        part_type,
        extra,
        body_lengths=[len(payload) for _, payload in parts],
    )


class LengthMismatch(RuntimeError):
    """A stream produced a different byte count than the Content-Length it announced."""


def _exactly(chunks: Iterable[bytes], length: int) -> Iterator[bytes]:
    """Pass chunks through, failing loudly (before the excess is sent) if the count differs.

    Raising mid-body makes the server drop the connection, which a client sees as a truncated
    response, instead of desynchronising the next response on a kept-alive connection.
    """
    sent = 0
    for chunk in chunks:
        sent += len(chunk)
        if sent > length:
            logger.error("response body exceeds its Content-Length of %d bytes", length)
            raise LengthMismatch(f"response body exceeds its Content-Length of {length} bytes")
        yield chunk
    if sent != length:
        logger.error("response body of %d bytes is short of its Content-Length %d", sent, length)
        raise LengthMismatch(f"response body of {sent} bytes is short of Content-Length {length}")
