"""Streaming application/zip download of a study or series (beyond Google)."""

from __future__ import annotations

import io
import zipfile
from collections.abc import Iterator

from flask import Response

from shared.dicom import media_types
from shared.domain.records import InstanceRecord
from shared.service import retrieve
from shared.service.context import Services

ZIP = "application/zip"


def wants_zip(accept: str | None) -> bool:
    """True when application/zip is the client's most preferred acceptable type."""
    ranges = [r for r in media_types.parse_accept(accept) if r.q > 0]
    if not ranges:
        return False
    best = max(ranges, key=lambda r: r.q)
    return best.type == ZIP


class _Pipe(io.RawIOBase):
    """A write-only, unseekable sink; zipfile then writes data descriptors and never seeks."""

    def __init__(self) -> None:
        self._chunks: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: bytes | bytearray | memoryview) -> int:  # type: ignore[override]
        self._chunks.append(bytes(data))
        return len(data)

    def drain(self) -> bytes:
        out = b"".join(self._chunks)
        self._chunks.clear()
        return out


def zip_response(services: Services, records: list[InstanceRecord], name: str) -> Response:
    """Each instance as stored, at `{study}/{series}/{sop}.dcm`, streamed member by member."""

    def chunks() -> Iterator[bytes]:
        pipe = _Pipe()
        with zipfile.ZipFile(pipe, mode="w", compression=zipfile.ZIP_STORED) as archive:
            for record in records:
                member = f"{record.study_uid}/{record.series_uid}/{record.sop_uid}.dcm"
                with archive.open(member, mode="w", force_zip64=True) as entry:
                    for chunk in retrieve.instance_chunks(services, record, record.transfer_syntax):
                        entry.write(chunk)
                        if data := pipe.drain():
                            yield data
                if data := pipe.drain():
                    yield data
        yield pipe.drain()

    response = Response(chunks(), content_type=ZIP, direct_passthrough=True)
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.zip"'
    return response
