"""ObjectStorage on a directory: gs://BUCKET/OBJECT is the file ROOT/BUCKET/OBJECT."""

from __future__ import annotations

import io
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

from shared.adapters.local.fs import fsync_path, prune_empty_dirs
from shared.errors import Conflict, NotFound
from shared.ports.objects import ObjectInfo, validate_bucket, validate_name

_CHUNK = 1 << 20
_TMP = ".tmp"  # no bucket can be named so: bucket names start with a letter or digit


class DirObjectStorage:
    """Buckets are the directories of `root` (by default $DICOMSTORE_DATA_DIR/gcs).

    The generation of an object is its mtime in nanoseconds; a write through this class always
    moves it forward, so a rewrite is seen as a new generation even within one clock tick.
    """

    def __init__(self, root: Path, *, fsync: bool = True) -> None:
        self.root = Path(root)
        self.fsync = fsync
        self._tmp = self.root / _TMP
        self._tmp.mkdir(parents=True, exist_ok=True)
        self._real_root = os.path.realpath(self.root)

    # --- paths -------------------------------------------------------------------------------
    def bucket_path(self, bucket: str) -> Path:
        return self.root / validate_bucket(bucket)

    def _path(self, bucket: str, name: str) -> Path:
        return self.bucket_path(bucket).joinpath(*validate_name(name).split("/"))

    def _existing_file(self, bucket: str, name: str) -> Path:
        path = self._path(bucket, name)
        if not path.is_file() or not self._inside_root(path):
            raise NotFound(f"object gs://{bucket}/{name} not found")
        return path

    def _inside_root(self, path: Path) -> bool:
        # A symlink placed in a bucket must not expose files outside the root.
        return os.path.realpath(path).startswith(self._real_root + os.sep)

    # --- ObjectStorage -----------------------------------------------------------------------
    def bucket_exists(self, bucket: str) -> bool:
        return self.bucket_path(bucket).is_dir()

    def list(self, bucket: str, prefix: str) -> Iterator[ObjectInfo]:
        base = self.bucket_path(bucket)
        if not base.is_dir():
            raise NotFound(f"bucket {bucket} not found")
        directory, _, _ = prefix.rpartition("/")
        segments = directory.split("/") if directory else []
        if any(s in ("", ".", "..") for s in segments):
            return  # no object name has such a segment here
        start = base.joinpath(*segments)
        if not self._inside_root(start):
            return
        found: list[ObjectInfo] = []
        for dirpath, _dirnames, filenames in os.walk(start):
            rel_dir = Path(dirpath).relative_to(base).as_posix()
            for filename in filenames:
                name = filename if rel_dir == "." else f"{rel_dir}/{filename}"
                path = Path(dirpath) / filename
                if name.startswith(prefix) and (not path.is_symlink() or self._inside_root(path)):
                    info = self._info(bucket, name, path)
                    if info is not None:
                        found.append(info)
        # Code-point order of str is the byte order of UTF-8: the order Cloud Storage lists in.
        yield from sorted(found, key=lambda info: info.name)

    def open(self, bucket: str, name: str) -> BinaryIO:
        path = self._existing_file(bucket, name)
        try:
            return open(path, "rb")
        except FileNotFoundError:
            raise NotFound(f"object gs://{bucket}/{name} not found") from None

    def read(self, bucket: str, name: str) -> bytes:
        with self.open(bucket, name) as handle:
            return handle.read()

    def stat(self, bucket: str, name: str) -> ObjectInfo:
        path = self._existing_file(bucket, name)
        info = self._info(bucket, name, path)
        if info is None:
            raise NotFound(f"object gs://{bucket}/{name} not found")
        return info

    def write(
        self,
        bucket: str,
        name: str,
        data: BinaryIO | bytes,
        content_type: str = "application/octet-stream",
    ) -> ObjectInfo:
        target = self._path(bucket, name)
        if not self.bucket_exists(bucket):
            raise NotFound(f"bucket {bucket} not found")
        source: BinaryIO = io.BytesIO(data) if isinstance(data, bytes | bytearray) else data
        tmp = self._tmp / uuid.uuid4().hex
        try:
            self._write_temp(tmp, source)
            self._bump_mtime(tmp, target)
            self._replace(tmp, target, bucket, name)
        finally:
            tmp.unlink(missing_ok=True)
        return self.stat(bucket, name)

    def delete(self, bucket: str, name: str, *, generation: str | None = None) -> bool:
        path = self._path(bucket, name)
        try:
            if generation is not None and str(path.stat().st_mtime_ns) != generation:
                return False
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError, PermissionError):
            # PermissionError is what unlink() of a directory raises on Linux.
            return False
        prune_empty_dirs(path.parent, self.bucket_path(bucket))
        return True

    # --- helpers -----------------------------------------------------------------------------
    def _info(self, bucket: str, name: str, path: Path) -> ObjectInfo | None:
        try:
            stat = path.stat()
        except OSError:
            return None  # removed while listing
        return ObjectInfo(bucket, name, stat.st_size, str(stat.st_mtime_ns))

    def _write_temp(self, tmp: Path, source: BinaryIO) -> None:
        with open(tmp, "wb") as out:
            while chunk := source.read(_CHUNK):
                out.write(chunk)
            out.flush()
            if self.fsync:
                os.fsync(out.fileno())

    @staticmethod
    def _bump_mtime(tmp: Path, target: Path) -> None:
        # File times tick coarsely (a few ms); a rewrite must never keep its old generation.
        try:
            previous = target.stat().st_mtime_ns
        except OSError:
            return
        now = max(time.time_ns(), previous + 1)
        os.utime(tmp, ns=(now, now))

    def _replace(self, tmp: Path, target: Path, bucket: str, name: str) -> None:
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(tmp, target)
        except (NotADirectoryError, IsADirectoryError, FileExistsError):
            # Cloud Storage holds both "a" and "a/b"; a directory cannot.
            raise Conflict(
                f"object gs://{bucket}/{name} cannot be stored beside an object that is a "
                "prefix of its name (or has its name as a prefix) in embedded mode"
            ) from None
        if self.fsync:
            fsync_path(target.parent)
