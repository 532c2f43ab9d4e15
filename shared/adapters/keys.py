"""Object-key validation shared by every BlobStore, so each adapter refuses the same keys."""

from __future__ import annotations

from shared.errors import InvalidArgument

# The directory store keeps its temp files under this first segment; every store reserves it
# so that a key valid in one backend is valid in all of them.
RESERVED_FIRST_SEGMENT = ".tmp"


def key_segments(key: str) -> list[str]:
    """The '/'-separated segments of `key`; InvalidArgument if it could escape or is reserved."""
    parts = key.split("/")
    if not key or any(p in ("", ".", "..") or "\\" in p or "\x00" in p for p in parts):
        raise InvalidArgument(f"invalid object key {key!r}")
    if parts[0] == RESERVED_FIRST_SEGMENT:
        raise InvalidArgument(f"invalid object key {key!r}")
    return parts
