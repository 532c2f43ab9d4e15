"""Hand-written multipart encoding/decoding for tests, independent of the product's own."""

from __future__ import annotations

import re


def multipart_body(
    parts: list[bytes], boundary: str = "TESTBOUNDARY", content_type: str = "application/dicom"
) -> bytes:
    body = b""
    for part in parts:
        body += f"--{boundary}\r\nContent-Type: {content_type}\r\n\r\n".encode() + part + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def stow_headers(boundary: str = "TESTBOUNDARY", accept: str | None = None) -> dict[str, str]:
    headers = {"Content-Type": f'multipart/related; type="application/dicom"; boundary={boundary}'}
    if accept:
        headers["Accept"] = accept
    return headers


def split_multipart(content_type: str, body: bytes) -> list[tuple[str, bytes]]:
    """(Content-Type, payload) of every part of a multipart/related body."""
    match = re.search(r'boundary="?([^";]+)"?', content_type)
    assert match, content_type
    delimiter = b"--" + match.group(1).encode()
    assert body.startswith(delimiter), body[:80]
    assert body.rstrip(b"\r\n").endswith(delimiter + b"--"), body[-80:]
    chunks = body.split(b"\r\n" + delimiter)
    chunks[0] = chunks[0][len(delimiter) :]
    parts = []
    for chunk in chunks:
        if chunk.startswith(b"--"):
            break
        head, _, payload = chunk.partition(b"\r\n\r\n")
        headers = dict(line.split(": ", 1) for line in head.decode().split("\r\n") if ": " in line)
        parts.append((headers.get("Content-Type", ""), payload))
    return parts
