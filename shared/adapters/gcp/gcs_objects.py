"""ObjectStorage on Cloud Storage: any bucket the service account can read or write."""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, BinaryIO, cast

from google.api_core import exceptions as google_exceptions

from shared.adapters.gcp import clients
from shared.adapters.gcp.gcs_blobs import _Prefixed, _read_up_to
from shared.errors import NotFound
from shared.ports.objects import ObjectInfo, validate_bucket, validate_name

if TYPE_CHECKING:
    from google.cloud.storage import Blob, Client

# As in GcsBlobStore: one request up to this size, a chunked resumable upload above it.
_SINGLE_REQUEST_MAX = 8 * 1024 * 1024
_CHUNK = 8 * 1024 * 1024
_READ_CHUNK = 1024 * 1024


class GcsObjectStorage:
    """Names are checked with the same rules as the directory adapter, so both accept the same."""

    def __init__(
        self,
        client: Client | None = None,
        *,
        chunk_size: int = _CHUNK,
        read_chunk_size: int = _READ_CHUNK,
    ) -> None:
        self.client = client if client is not None else clients.storage_client()
        self.chunk_size = chunk_size
        self.read_chunk_size = read_chunk_size

    def bucket_exists(self, bucket: str) -> bool:
        return bool(self.client.bucket(validate_bucket(bucket)).exists())

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        pages = self.client.list_blobs(validate_bucket(bucket), prefix=prefix or None)
        try:
            # Listing is lazy: a missing bucket surfaces on the first page.
            for blob in pages:
                yield _info(bucket, blob)
        except google_exceptions.NotFound:
            raise NotFound(f"bucket {bucket} not found") from None

    def open(self, bucket: str, name: str) -> BinaryIO:
        blob = self._existing(bucket, name)
        # The reader is pinned to the generation just read: an overwrite cannot mix two objects.
        return cast(BinaryIO, blob.open("rb", chunk_size=self.read_chunk_size))

    def read(self, bucket: str, name: str) -> bytes:
        blob = self._existing(bucket, name)
        try:
            data: bytes = blob.download_as_bytes()
        except google_exceptions.NotFound:
            raise NotFound(f"object gs://{bucket}/{name} not found") from None
        return data

    def stat(self, bucket: str, name: str) -> ObjectInfo:
        return _info(bucket, self._existing(bucket, name))

    def write(
        self,
        bucket: str,
        name: str,
        data: BinaryIO | bytes,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        blob = self.client.bucket(validate_bucket(bucket)).blob(validate_name(name))
        source: BinaryIO = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
        head = _read_up_to(source, _SINGLE_REQUEST_MAX + 1)
        # GCS rejects the upload if the bytes it got differ from the checksum we computed.
        options: dict[str, Any] = {"content_type": content_type, "checksum": "crc32c"}
        try:
            if len(head) <= _SINGLE_REQUEST_MAX:
                blob.upload_from_file(io.BytesIO(head), size=len(head), **options)
            else:
                blob.chunk_size = self.chunk_size
                blob.upload_from_file(_Prefixed(head, source), **options)
        except google_exceptions.NotFound:
            raise NotFound(f"bucket {bucket} not found") from None
        return _info(bucket, blob)

    def delete(self, bucket: str, name: str, *, generation: str | None = None) -> bool:
        blob = self.client.bucket(validate_bucket(bucket)).blob(validate_name(name))
        match = int(generation) if generation is not None else None
        try:
            # ifGenerationMatch makes it atomic on Cloud Storage; the read first also keeps
            # emulators that ignore the precondition (fake-gcs-server) to the contract.
            if generation is not None and self.stat(bucket, name).generation != generation:
                return False
            blob.delete(if_generation_match=match)
        except (NotFound, google_exceptions.NotFound, google_exceptions.PreconditionFailed):
            return False
        return True

    def _existing(self, bucket: str, name: str) -> Blob:
        handle = self.client.bucket(validate_bucket(bucket))
        validate_name(name)
        try:
            blob = handle.get_blob(name)
        except google_exceptions.NotFound:
            blob = None
        if blob is None:
            raise NotFound(f"object gs://{bucket}/{name} not found")
        return blob


def _info(bucket: str, blob: Blob) -> ObjectInfo:
    return ObjectInfo(bucket, str(blob.name), int(blob.size or 0), str(blob.generation))
