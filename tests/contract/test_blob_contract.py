"""Contract suite for BlobStore: every adapter must pass it unchanged."""

from __future__ import annotations

import io
import threading
from collections.abc import Iterator
from pathlib import Path

import google_crc32c
import pytest

from shared.adapters.local.file_blobs import FileBlobStore, crc32c_b64
from shared.errors import InvalidArgument, NotFound, PreconditionFailed
from shared.ports.blobs import BlobStore


@pytest.fixture(params=["local", "gcp"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "gcp":
        from shared.adapters.gcp.gcs_blobs import GcsBlobStore

        gcs = request.getfixturevalue("gcs_emulator")
        yield GcsBlobStore(gcs.fresh_bucket(), client=gcs.client)
        return
    yield FileBlobStore(tmp_path / "blobs")


def test_put_then_read_back(blobs: BlobStore) -> None:
    data = b"DICM" * 100_000
    info = blobs.put("a/b/c.dcm", io.BytesIO(data))
    assert info.size == len(data)
    assert info.crc32c == crc32c_b64(google_crc32c.value(data))
    with blobs.open("a/b/c.dcm") as handle:
        assert handle.read() == data
    assert blobs.stat("a/b/c.dcm").crc32c == info.crc32c


def test_ranged_read(blobs: BlobStore) -> None:
    blobs.put("k", io.BytesIO(bytes(range(256))))
    assert blobs.read_range("k", 10, 5) == bytes([10, 11, 12, 13, 14])
    assert blobs.read_range("k", 250, 100) == bytes(range(250, 256))


def test_if_absent_never_overwrites(blobs: BlobStore) -> None:
    blobs.put("k", io.BytesIO(b"first"))
    with pytest.raises(PreconditionFailed):
        blobs.put("k", io.BytesIO(b"second"), if_absent=True)
    with blobs.open("k") as handle:
        assert handle.read() == b"first"


def test_overwrite_without_precondition(blobs: BlobStore) -> None:
    blobs.put("k", io.BytesIO(b"first"))
    blobs.put("k", io.BytesIO(b"second"))
    with blobs.open("k") as handle:
        assert handle.read() == b"second"


def test_missing_objects(blobs: BlobStore) -> None:
    with pytest.raises(NotFound):
        blobs.open("missing")
    with pytest.raises(NotFound):
        blobs.stat("missing")
    assert blobs.delete("missing") is False


def test_delete_and_list(blobs: BlobStore) -> None:
    for key in ("p/2", "p/1", "q/1"):
        blobs.put(key, io.BytesIO(b"x"))
    assert list(blobs.list_keys("p/")) == ["p/1", "p/2"]
    assert blobs.delete("p/1") is True
    assert list(blobs.list_keys("")) == ["p/2", "q/1"]


@pytest.mark.parametrize("key", ["", "../x", "a/../../x", "/abs", "a//b", "a/./b", ".tmp/x"])
def test_keys_cannot_escape(blobs: BlobStore, key: str) -> None:
    with pytest.raises(InvalidArgument):
        blobs.put(key, io.BytesIO(b"x"))


def test_failed_write_leaves_nothing(blobs: BlobStore) -> None:
    class Exploding(io.RawIOBase):
        def __init__(self) -> None:
            self.calls = 0

        def readable(self) -> bool:
            return True

        def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
            self.calls += 1
            if self.calls > 2:
                raise OSError("connection reset")
            buffer[:3] = b"abc"
            return 3

    with pytest.raises(OSError):
        blobs.put("k", io.BufferedReader(Exploding()))  # type: ignore[arg-type]
    with pytest.raises(NotFound):
        blobs.open("k")
    assert list(blobs.list_keys("")) == []


def test_concurrent_if_absent_has_one_winner(blobs: BlobStore) -> None:
    wins: list[int] = []
    errors: list[Exception] = []

    def write(number: int) -> None:
        try:
            blobs.put("same", io.BytesIO(str(number).encode() * 1000), if_absent=True)
            wins.append(number)
        except PreconditionFailed as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(n,)) for n in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(wins) == 1 and len(errors) == 7
    with blobs.open("same") as handle:
        assert handle.read() == str(wins[0]).encode() * 1000
