"""Local durability: blob bytes fsynced, named, then the name fsynced; SQLite commits synced."""

from __future__ import annotations

import io
import os
from pathlib import Path

import google_crc32c
import pytest

from shared.adapters.local import file_blobs
from shared.adapters.local.file_blobs import FileBlobStore, crc32c_b64
from shared.errors import PreconditionFailed


class Recorder:
    """Wraps os.fsync and os.link to log, in order, what was made durable and when named."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: list[tuple[str, str]] = []
        real_fsync, real_link = os.fsync, os.link

        def fsync(fd: int) -> None:
            real_fsync(fd)
            self.events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))

        def link(src: str | Path, dst: str | Path) -> None:
            real_link(src, dst)
            self.events.append(("link", str(dst)))

        monkeypatch.setattr(file_blobs.os, "fsync", fsync)
        monkeypatch.setattr(file_blobs.os, "link", link)


@pytest.mark.parametrize("staged", [False, True], ids=["copied", "staged"])
def test_put_fsyncs_bytes_before_naming_them_and_the_directory_after(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, staged: bool
) -> None:
    blobs = FileBlobStore(tmp_path / "blobs")
    data = os.urandom(300_000)
    recorder = Recorder(monkeypatch)
    source: io.BufferedIOBase
    if staged:
        source = blobs.stage()
        source.write(data)
        source.seal()
        staging_path = str(source.path)
    else:
        source = io.BytesIO(data)
    info = blobs.put("s/study/series/sop/x.dcm", source, if_absent=True)
    target = str(tmp_path / "blobs" / "s/study/series/sop/x.dcm")
    kinds = [kind for kind, _ in recorder.events]
    assert kinds == ["fsync", "link", "fsync"]
    if staged:
        assert recorder.events[0][1] == staging_path
    assert recorder.events[1][1] == target
    assert recorder.events[2][1] == str(Path(target).parent)
    assert info.size == len(data)
    assert info.crc32c == crc32c_b64(google_crc32c.value(data))
    source.close()
    assert Path(target).read_bytes() == data
    assert os.listdir(tmp_path / "blobs" / ".tmp") == []


def test_staged_file_counts_what_is_written_and_is_readable(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "blobs")
    with blobs.stage() as staged:
        staged.write(b"abc")
        staged.write(bytearray(b"def"))
        staged.write(memoryview(b"ghi"))
        staged.seal()
        staged.seek(0)
        assert staged.read() == b"abcdefghi"
        assert staged.size == 9
        assert staged.crc == google_crc32c.value(b"abcdefghi")
    assert os.listdir(tmp_path / "blobs" / ".tmp") == []


def test_staged_file_closed_unused_leaves_nothing(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "blobs")
    staged = blobs.stage()
    staged.write(b"x" * 10)
    staged.seal()
    staged.close()
    assert os.listdir(tmp_path / "blobs" / ".tmp") == []
    assert blobs.list_keys("") is not None and list(blobs.list_keys("")) == []


def test_staged_put_if_absent_never_overwrites(tmp_path: Path) -> None:
    blobs = FileBlobStore(tmp_path / "blobs")
    blobs.put("k", io.BytesIO(b"first"))
    with blobs.stage() as staged, pytest.raises(PreconditionFailed):
        staged.write(b"second")
        staged.seal()
        blobs.put("k", staged, if_absent=True)
    with blobs.open("k") as handle:
        assert handle.read() == b"first"


def test_staged_file_of_another_store_is_copied(tmp_path: Path) -> None:
    first, second = FileBlobStore(tmp_path / "a"), FileBlobStore(tmp_path / "b")
    with first.stage() as staged:
        staged.write(b"payload")
        staged.seal()
        staged.seek(0)
        second.put("k", staged)
    with second.open("k") as handle:
        assert handle.read() == b"payload"


def test_sqlite_commits_are_synced(tmp_path: Path) -> None:
    """WAL with synchronous=NORMAL would not fsync at commit: acknowledged rows could vanish."""
    from shared.adapters.local.sqlite_db import SqliteDatabase
    from shared.adapters.local.sqlite_index import SqliteIndex

    full = 2
    index = SqliteIndex(tmp_path / "index.sqlite")
    with index._connection() as conn:
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == full
    index.close()
    database = SqliteDatabase(tmp_path / "queue.sqlite", "CREATE TABLE IF NOT EXISTS t (x);")
    assert database.connection().execute("PRAGMA synchronous").fetchone()[0] == full
