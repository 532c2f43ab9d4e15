"""What this machine's disk and page cache cost per 0.5 MB instance, whichever server writes."""

from __future__ import annotations

import os
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from shared.adapters.local.fs import fsync_path

INSTANCE_BYTES = 525_000  # one 512x512 16-bit CT instance of the STOW workloads
FILES = 40


def disk_costs(parent: Path | None = None) -> dict[str, float]:
    """Median milliseconds of the file operations a durable STOW of one instance needs.

    - `create_ms`: creating one empty file. On ext4 this allocates an inode near the
      directory's block group; on an aged disk that search costs from 0.01 to over 0.5 ms of
      CPU depending on where the directory happens to lie.
    - `write_fresh_ms`: write() of 0.5 MB into new files; the page cache needs new pages.
      On a VM whose memory was never touched those are first-touch pages, which can cost
      ten times a write into pages the kernel just freed.
    - `write_recycled_ms`: the same after deleting those files, so their pages are reused.
    - `fsync_ms`, `link_and_dir_fsync_ms`, `dir_fsync_ms`: making one such file and its
      name durable (what both servers do before acknowledging an instance).
    """
    workdir = Path(tempfile.mkdtemp(prefix="bench-disk-", dir=parent))
    data = os.urandom(INSTANCE_BYTES)
    try:
        created, fresh = _timed_writes(workdir, data)
        for path in workdir.iterdir():
            path.unlink()
        _, recycled = _timed_writes(workdir, data)
        paths = sorted(workdir.iterdir())
        fsync = [_timed(lambda p=p: fsync_path(p)) for p in paths]  # type: ignore[misc]
        linked = workdir / "linked"
        linked.mkdir()
        link = [_timed(lambda p=p: _link_durably(p, linked)) for p in paths]  # type: ignore[misc]
        dir_only = [_timed(lambda: fsync_path(linked)) for _ in paths]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "create_ms": _median_ms(created),
        "write_fresh_ms": _median_ms(fresh),
        "write_recycled_ms": _median_ms(recycled),
        "fsync_ms": _median_ms(fsync),
        "link_and_dir_fsync_ms": _median_ms(link),
        "dir_fsync_ms": _median_ms(dir_only),
    }


def _timed_writes(directory: Path, data: bytes) -> tuple[list[float], list[float]]:
    """Seconds to create each of FILES new files, and to write `data` into each."""
    creates, writes = [], []
    for n in range(FILES):
        start = time.perf_counter()
        fd = os.open(directory / f"f{n}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        creates.append(time.perf_counter() - start)
        try:
            writes.append(_timed(lambda fd=fd: os.write(fd, data)))  # type: ignore[misc]
        finally:
            os.close(fd)
    return creates, writes


def _link_durably(path: Path, directory: Path) -> None:
    os.link(path, directory / path.name)
    fsync_path(directory)


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _median_ms(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1000, 3)
