"""BlobStore: immutable-by-default object storage for Part-10 instances and exports."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO, Protocol, runtime_checkable


@dataclass(frozen=True)
class BlobInfo:
    """What the store knows of one object; crc32c is base64 of the big-endian checksum (GCS)."""

    key: str
    size: int
    crc32c: str
    generation: str
    storage_class: str = "STANDARD"


@runtime_checkable
class BlobStore(Protocol):
    """Objects addressed by '/'-separated keys. Keys are produced by the services, never by users.

    Errors: NotFound for a missing key; PreconditionFailed when `if_absent` and the key exists.
    """

    def put(
        self,
        key: str,
        data: BinaryIO,
        *,
        if_absent: bool = False,
        storage_class: str = "STANDARD",
        content_type: str = "application/dicom",
    ) -> BlobInfo:
        """Write all of `data` (read to EOF) atomically; readers never see a partial object."""
        ...

    def open(self, key: str) -> BinaryIO:
        """A readable stream of the whole object; the caller closes it."""
        ...

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        """`length` bytes from `offset` (fewer only at the end of the object)."""
        ...

    def stat(self, key: str) -> BlobInfo:
        """Size, checksum and generation of the object."""
        ...

    def delete(self, key: str) -> bool:
        """Remove the object; True if it existed. Deleting a missing key is not an error."""
        ...

    def list_keys(self, prefix: str) -> Iterator[str]:
        """Keys starting with `prefix`, in lexicographic order."""
        ...
