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
        fresh = _timed_writes(workdir, data)
        for path in workdir.iterdir():
            path.unlink()
        recycled = _timed_writes(workdir, data)
        paths = sorted(workdir.iterdir())
        fsync = [_timed(lambda p=p: fsync_path(p)) for p in paths]  # type: ignore[misc]
        linked = workdir / "linked"
        linked.mkdir()
        link = [
            _timed(lambda p=p: (os.link(p, linked / p.name), fsync_path(linked)))  # type: ignore[misc]
            for p in paths
        ]
        dir_only = [_timed(lambda: fsync_path(linked)) for _ in paths]
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "write_fresh_ms": _median_ms(fresh),
        "write_recycled_ms": _median_ms(recycled),
        "fsync_ms": _median_ms(fsync),
        "link_and_dir_fsync_ms": _median_ms(link),
        "dir_fsync_ms": _median_ms(dir_only),
    }


def _timed_writes(directory: Path, data: bytes) -> list[float]:
    times = []
    for n in range(FILES):
        fd = os.open(directory / f"f{n}", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            times.append(_timed(lambda fd=fd: os.write(fd, data)))  # type: ignore[misc]
        finally:
            os.close(fd)
    return times


def _timed(action: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    return time.perf_counter() - start


def _median_ms(seconds: list[float]) -> float:
    return round(statistics.median(seconds) * 1000, 3)
