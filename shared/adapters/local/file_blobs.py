"""BlobStore on a local directory: write to a temp file, fsync, then atomic rename or link."""

from __future__ import annotations

import base64
import io
import os
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

import google_crc32c

from shared.adapters.keys import key_segments
from shared.adapters.local.fs import fsync_path, prune_empty_dirs
from shared.errors import NotFound, PreconditionFailed
from shared.ports.blobs import BlobInfo

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer

_CHUNK = 1 << 20
# fsync releases the GIL: a few threads let staged files reach the disk while requests parse.
_SYNC_THREADS = 4


def crc32c_b64(value: int) -> str:
    """Cloud Storage's representation of a CRC32C: base64 of the 4 big-endian bytes."""
    return base64.b64encode(value.to_bytes(4, "big")).decode("ascii")


class FileBlobStore:
    """Objects as files under `root`; a key's '/' separators become directories.

    Storage classes are recorded by the index, not here: a directory has only one class.
    """

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._tmp = self.root / ".tmp"
        self._tmp.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        # Keys come from services, but a key is still a path: refuse anything that could escape.
        return self.root.joinpath(*key_segments(key))

    def put(
        self,
        key: str,
        data: BinaryIO,
        *,
        if_absent: bool = False,
        storage_class: str = "STANDARD",
        content_type: str = "application/dicom",
    ) -> BlobInfo:
        target = self._path(key)
        if isinstance(data, StagedFile) and data.path.parent == self._tmp and not data.closed:
            # Already on this disk and (being) fsynced: publish it instead of copying it.
            data.flush()
            if self.fsync:
                data.wait_durable()
            self._publish(key, data.path, target, if_absent=if_absent)
            return self._info(key, target, data.size, data.crc, storage_class)
        tmp = self._tmp / uuid.uuid4().hex
        crc = 0
        size = 0
        try:
            with open(tmp, "wb") as out:
                while chunk := data.read(_CHUNK):
                    crc = google_crc32c.extend(crc, chunk)
                    size += len(chunk)
                    out.write(chunk)
                out.flush()
                if self.fsync:
                    os.fsync(out.fileno())
            self._publish(key, tmp, target, if_absent=if_absent)
        finally:
            tmp.unlink(missing_ok=True)
        return self._info(key, target, size, crc, storage_class)

    def stage(self) -> StagedFile:
        """A new file in the staging area for an object's bytes, read back before `put`.

        `seal()` starts its fsync in the background; `put(key, staged)` then waits for it and
        links the file into place, so the bytes are written once and reach the disk while the
        caller still works on them. Closing the staged file removes its staging name.
        """
        return StagedFile(self._tmp / uuid.uuid4().hex, _SYNC_POOL if self.fsync else None)

    def _publish(self, key: str, durable: Path, target: Path, *, if_absent: bool) -> None:
        """Give the fsynced file `durable` its key, atomically, and make the name durable."""
        target.parent.mkdir(parents=True, exist_ok=True)
        if if_absent:
            try:
                os.link(durable, target)  # atomic create-if-absent
            except FileExistsError:
                raise PreconditionFailed(f"object {key!r} already exists") from None
        else:
            os.replace(durable, target)
        if self.fsync:
            fsync_path(target.parent)

    @staticmethod
    def _info(key: str, target: Path, size: int, crc: int, storage_class: str) -> BlobInfo:
        stat = target.stat()
        return BlobInfo(key, size, crc32c_b64(crc), str(stat.st_mtime_ns), storage_class)

    def open(self, key: str) -> BinaryIO:
        try:
            return open(self._path(key), "rb")
        except FileNotFoundError:
            raise NotFound(f"object {key!r} not found") from None

    def read_range(self, key: str, offset: int, length: int) -> bytes:
        with self.open(key) as handle:
            handle.seek(offset)
            return handle.read(length)

    def stat(self, key: str) -> BlobInfo:
        path = self._path(key)
        try:
            stat = path.stat()
        except FileNotFoundError:
            raise NotFound(f"object {key!r} not found") from None
        crc = 0
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                crc = google_crc32c.extend(crc, chunk)
        return BlobInfo(key, stat.st_size, crc32c_b64(crc), str(stat.st_mtime_ns))

    def delete(self, key: str) -> bool:
        path = self._path(key)
        try:
            path.unlink()
        except FileNotFoundError:
            return False
        prune_empty_dirs(path.parent, self.root)
        return True

    def list_keys(self, prefix: str) -> Iterator[str]:
        keys: list[str] = []
        for dirpath, dirnames, filenames in os.walk(self.root):
            rel_dir = os.path.relpath(dirpath, self.root)
            if rel_dir == ".tmp" or rel_dir.startswith(".tmp" + os.sep):
                dirnames[:] = []
                continue
            for name in filenames:
                rel = name if rel_dir == "." else f"{rel_dir.replace(os.sep, '/')}/{name}"
                if rel.startswith(prefix):
                    keys.append(rel)
        yield from sorted(keys)


class StagedFile(io.BufferedRandom):
    """An object's bytes in the staging area, with their size and CRC32C as written."""

    def __init__(self, path: Path, syncer: ThreadPoolExecutor | None) -> None:
        super().__init__(io.FileIO(path, "x+"), buffer_size=_CHUNK)
        self.path = path
        self.size = 0
        self.crc = 0
        self._syncer = syncer
        self._synced: Future[None] | None = None

    def write(self, data: ReadableBuffer, /) -> int:
        written = super().write(data)
        # google_crc32c takes only bytes, not other buffers.
        chunk = data if type(data) is bytes else bytes(memoryview(data))
        self.crc = google_crc32c.extend(
            self.crc, chunk[:written] if written < len(chunk) else chunk
        )
        self.size += written
        return written

    def seal(self) -> None:
        """No more writes: start the fsync in the background (when the store fsyncs)."""
        self.flush()
        if self._syncer is not None and self._synced is None:
            self._synced = self._syncer.submit(os.fsync, self.fileno())

    def wait_durable(self) -> None:
        """Return once every byte written is on disk; raises the fsync's OSError."""
        if self._synced is None:
            self.flush()
            os.fsync(self.fileno())
        else:
            self._synced.result()

    def close(self) -> None:
        if self.closed:
            return
        # The fsync thread holds our descriptor number: never let it see a reused one.
        if self._synced is not None and not self._synced.cancel():
            self._synced.exception()
        try:
            super().close()
        finally:
            self.path.unlink(missing_ok=True)


# Threads start on first use.
_SYNC_POOL = ThreadPoolExecutor(_SYNC_THREADS, thread_name_prefix="blob-fsync")
