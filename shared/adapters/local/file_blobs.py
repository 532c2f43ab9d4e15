"""BlobStore on a local directory: write to a temp file, fsync, then atomic rename or link."""

from __future__ import annotations

import base64
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

import google_crc32c

from shared.adapters.keys import key_segments
from shared.errors import NotFound, PreconditionFailed
from shared.ports.blobs import BlobInfo

_CHUNK = 1 << 20


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
            target.parent.mkdir(parents=True, exist_ok=True)
            if if_absent:
                try:
                    os.link(tmp, target)  # atomic create-if-absent
                except FileExistsError:
                    raise PreconditionFailed(f"object {key!r} already exists") from None
            else:
                os.replace(tmp, target)
            if self.fsync:
                _fsync_dir(target.parent)
        finally:
            tmp.unlink(missing_ok=True)
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
        _prune_empty_dirs(path.parent, self.root)
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


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _prune_empty_dirs(start: Path, root: Path) -> None:
    current = start
    while current != root and root in current.parents:
        try:
            current.rmdir()
        except OSError:
            return
        current = current.parent
