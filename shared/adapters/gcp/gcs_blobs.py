"""BlobStore on a Cloud Storage bucket: checksummed streaming uploads, generation preconditions."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from google.api_core import exceptions as google_exceptions

from shared.adapters.gcp import clients
from shared.adapters.keys import key_segments
from shared.errors import NotFound, PreconditionFailed
from shared.ports.blobs import BlobInfo

if TYPE_CHECKING:
    from google.cloud.storage import Blob, Client

# Up to this size one multipart request carries the object; above it a resumable upload
# streams it in chunks, so memory stays bounded whatever the object size.
_SINGLE_REQUEST_MAX = 8 * 1024 * 1024
_CHUNK = 8 * 1024 * 1024  # resumable chunks must be multiples of 256 KiB
_READ_CHUNK = 1024 * 1024


class GcsBlobStore:
    """Objects of one bucket; `if_absent` is `ifGenerationMatch=0`, so GCS arbitrates races."""

    def __init__(
        self,
        bucket_name: str,
        client: Client | None = None,
        *,
        chunk_size: int = _CHUNK,
        read_chunk_size: int = _READ_CHUNK,
    ) -> None:
        self.client = client if client is not None else clients.storage_client()
        self.bucket = self.client.bucket(bucket_name)
        self.chunk_size = chunk_size
        self.read_chunk_size = read_chunk_size

    def put(
        self,
        key: str,
        data: BinaryIO,
        *,
        if_absent: bool = False,
        storage_class: str = "STANDARD",
        content_type: str = "application/dicom",
    ) -> BlobInfo:
        key_segments(key)
        blob = self.bucket.blob(key)
        blob.storage_class = storage_class
        head = _read_up_to(data, _SINGLE_REQUEST_MAX + 1)
        options: dict[str, Any] = {
            "content_type": content_type,
            "checksum": "crc32c",  # GCS rejects the upload if the bytes it got differ
            "if_generation_match": 0 if if_absent else None,
        }
        try:
            if len(head) <= _SINGLE_REQUEST_MAX:
                blob.upload_from_file(io.BytesIO(head), size=len(head), **options)
            else:
                blob.chunk_size = self.chunk_size
                blob.upload_from_file(_Prefixed(head, data), **options)
        except google_exceptions.PreconditionFailed:
            raise PreconditionFailed(f"object {key!r} already exists") from None
        return _info(key, blob)

    def open(self, key: str) -> BinaryIO:
        blob = self._existing(key)
        # The reader is pinned to the generation just read: an overwrite cannot mix two objects.
        reader = blob.open("rb", chunk_size=self.read_chunk_size)
        return cast(BinaryIO, reader)

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        key_segments(key)
        if length <= 0:
            return b""
        blob = self.bucket.blob(key)
        try:
            # GCS ranges are inclusive at both ends.
            data: bytes = blob.download_as_bytes(start=offset, end=offset + length - 1)
        except google_exceptions.NotFound:
            raise NotFound(f"object {key!r} not found") from None
        except google_exceptions.RequestRangeNotSatisfiable:
            return b""  # past the end, like reading a file there
        return data

    def stat(self, key: str) -> BlobInfo:
        return _info(key, self._existing(key))

    def delete(self, key: str) -> bool:
        key_segments(key)
        try:
            self.bucket.blob(key).delete()
        except google_exceptions.NotFound:
            return False
        return True

    def list_keys(self, prefix: str) -> Iterator[str]:
        # GCS lists names in lexicographic order already; streaming avoids holding them all.
        for blob in self.client.list_blobs(self.bucket, prefix=prefix or None):
            yield blob.name

    def _existing(self, key: str) -> Blob:
        key_segments(key)
        blob = self.bucket.get_blob(key)
        if blob is None:
            raise NotFound(f"object {key!r} not found")
        return blob


def _info(key: str, blob: Blob) -> BlobInfo:
    return BlobInfo(
        key=key,
        size=int(blob.size or 0),
        crc32c=str(blob.crc32c),
        generation=str(blob.generation),
        storage_class=blob.storage_class or "STANDARD",
    )


def _read_up_to(data: BinaryIO, limit: int) -> bytes:
    parts: list[bytes] = []
    remaining = limit
    while remaining > 0:
        chunk = data.read(remaining)
        if not chunk:
            break
        parts.append(chunk)
        remaining -= len(chunk)
    return b"".join(parts)


class _Prefixed(io.BufferedIOBase):
    """The bytes already read for the size probe, then the rest of the caller's stream.

    `read(n)` returns n bytes unless the stream ends: the resumable uploader takes a short
    chunk for the last one and would finalise the object early.
    """

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest
        self._position = 0

    def readable(self) -> bool:
        return True

    def tell(self) -> int:
        # The resumable uploader asks where the stream starts before sending the first chunk.
        return self._position

    def read(self, size: int | None = -1) -> bytes:
        wanted = None if size is None or size < 0 else size
        parts: list[bytes] = []
        if self._head.nbytes:
            count = self._head.nbytes if wanted is None else min(wanted, self._head.nbytes)
            parts.append(self._head[:count].tobytes())
            self._head = self._head[count:]
        missing = None if wanted is None else wanted - sum(map(len, parts))
        if missing is None:
            parts.append(self._rest.read())
        elif missing > 0:
            parts.append(_read_up_to(self._rest, missing))
        data = b"".join(parts)
        self._position += len(data)
        return data
