"""Response builders and the one table that maps the error tree to HTTP responses."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
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
    return Response(body, status=status, content_type=content_type)


def multipart_response(
    parts: Iterable[tuple[dict[str, str], Iterable[bytes]]], part_type: str, extra: str = ""
) -> Response:
    """Stream a multipart/related body part by part (headers of each part in its own chunk)."""
    boundary = multipart.new_boundary()
    content_type = f'multipart/related; type="{part_type}"; boundary={boundary}{extra}'
    chunks: Iterator[bytes] = multipart.multipart_chunks(parts, boundary)
    return Response(chunks, status=200, content_type=content_type, direct_passthrough=True)
