"""pydicom's bundled test files by explicit name (never a glob: that tries to download)."""

from __future__ import annotations

from pathlib import Path

from pydicom.data import get_testdata_file


def bundled_path(name: str) -> str:
    path = get_testdata_file(name, download=False)
    assert isinstance(path, str), f"{name} is not bundled with pydicom"
    return path


def bundled_bytes(name: str) -> bytes:
    return Path(bundled_path(name)).read_bytes()
