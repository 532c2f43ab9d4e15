"""Directory operations the file-backed adapters share: durable names, tidy empty folders."""

from __future__ import annotations

import os
from pathlib import Path


def fsync_path(path: Path) -> None:
    """fsync a file or directory by path; for a directory, this makes its entries durable."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def prune_empty_dirs(start: Path, root: Path) -> None:
    """Remove `start` and its parents while they are empty, stopping at `root` (kept)."""
    current = start
    while current != root and root in current.parents:
        try:
            current.rmdir()
        except OSError:
            return
        current = current.parent
