"""Contract suite for ObjectStorage: the directory and Cloud Storage adapters behave alike."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from shared.adapters.local.dir_objects import DirObjectStorage
from shared.errors import Conflict, InvalidArgument, NotFound
from shared.ports.objects import ObjectStorage


@dataclass
class Fixture:
    objects: ObjectStorage
    bucket: str  # an existing, empty bucket


@pytest.fixture(params=["local", "gcp"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Fixture]:
    if request.param == "gcp":
        from shared.adapters.gcp.gcs_objects import GcsObjectStorage

        gcs = request.getfixturevalue("gcs_emulator")
        yield Fixture(GcsObjectStorage(gcs.client), gcs.fresh_bucket())
        return
    objects = DirObjectStorage(tmp_path / "gcs", fsync=False)
    bucket = f"test-{uuid.uuid4().hex[:12]}"
    (tmp_path / "gcs" / bucket).mkdir()
    yield Fixture(objects, bucket)


def test_write_read_stat(store: Fixture) -> None:
    objects, bucket = store.objects, store.bucket
    data = bytes(range(256)) * 5000
    info = objects.write(bucket, "dir/sub/a.dcm", data, "application/dicom")
    assert (info.bucket, info.name, info.size) == (bucket, "dir/sub/a.dcm", len(data))
    assert info.uri == f"gs://{bucket}/dir/sub/a.dcm"
    assert info.generation
    assert objects.read(bucket, "dir/sub/a.dcm") == data
    with objects.open(bucket, "dir/sub/a.dcm") as handle:
        assert handle.read() == data
    assert objects.stat(bucket, "dir/sub/a.dcm") == info


def test_write_from_a_stream_larger_than_one_request(store: Fixture) -> None:
    data = b"\x01\x02\x03" * (3 * 1024 * 1024)  # 9 MiB: a chunked upload on Cloud Storage
    info = store.objects.write(store.bucket, "big.bin", io.BytesIO(data))
    assert info.size == len(data)
    assert store.objects.read(store.bucket, "big.bin") == data


def test_overwrite_changes_generation(store: Fixture) -> None:
    objects, bucket = store.objects, store.bucket
    first = objects.write(bucket, "a", b"first")
    second = objects.write(bucket, "a", b"second, longer")
    assert second.generation != first.generation
    assert objects.read(bucket, "a") == b"second, longer"
    assert objects.stat(bucket, "a").size == len(b"second, longer")


def test_list_in_lexicographic_order_with_prefix(store: Fixture) -> None:
    objects, bucket = store.objects, store.bucket
    names = ["b/2.dcm", "a-b", "a/b/c.dcm", "a/a.dcm", "b/1.dcm", "ab", "é.dcm", "z"]
    for name in names:
        objects.write(bucket, name, name.encode())
    listed = list(objects.list(bucket, ""))
    assert [info.name for info in listed] == sorted(names)
    assert all(info.size == len(info.name.encode()) for info in listed)
    assert all(info.generation == objects.stat(bucket, info.name).generation for info in listed)
    assert [i.name for i in objects.list(bucket, "a/")] == ["a/a.dcm", "a/b/c.dcm"]
    assert [i.name for i in objects.list(bucket, "a")] == ["a-b", "a/a.dcm", "a/b/c.dcm", "ab"]
    assert [i.name for i in objects.list(bucket, "a/b")] == ["a/b/c.dcm"]
    assert [i.name for i in objects.list(bucket, "b/1")] == ["b/1.dcm"]
    assert list(objects.list(bucket, "nothing/")) == []
    assert list(objects.list(bucket, "z/")) == []


def test_missing_objects(store: Fixture) -> None:
    objects, bucket = store.objects, store.bucket
    objects.write(bucket, "dir/a", b"x")
    for name in ("missing", "dir", "dir/a/b"):
        with pytest.raises(NotFound):
            objects.open(bucket, name)
        with pytest.raises(NotFound):
            objects.read(bucket, name)
        with pytest.raises(NotFound):
            objects.stat(bucket, name)
        assert objects.delete(bucket, name) is False


def test_delete(store: Fixture) -> None:
    objects, bucket = store.objects, store.bucket
    objects.write(bucket, "d/e/f", b"x")
    objects.write(bucket, "d/g", b"y")
    assert objects.delete(bucket, "d/e/f") is True
    assert objects.delete(bucket, "d/e/f") is False
    assert [i.name for i in objects.list(bucket, "")] == ["d/g"]
    assert objects.bucket_exists(bucket)  # deleting the last objects keeps the bucket


def test_delete_only_the_named_generation(store: Fixture) -> None:
    objects, bucket = store.objects, store.bucket
    old = objects.write(bucket, "a.dcm", b"old")
    new = objects.write(bucket, "a.dcm", b"new")
    assert objects.delete(bucket, "a.dcm", generation=old.generation) is False
    assert objects.read(bucket, "a.dcm") == b"new"
    assert objects.delete(bucket, "a.dcm", generation=new.generation) is True
    assert objects.delete(bucket, "a.dcm", generation=new.generation) is False


def test_missing_bucket(store: Fixture) -> None:
    objects = store.objects
    missing = f"missing-{uuid.uuid4().hex[:12]}"
    assert objects.bucket_exists(store.bucket) is True
    assert objects.bucket_exists(missing) is False
    with pytest.raises(NotFound):
        list(objects.list(missing, ""))
    with pytest.raises(NotFound):
        objects.write(missing, "a", b"x")
    with pytest.raises(NotFound):
        objects.open(missing, "a")
    assert objects.delete(missing, "a") is False


@pytest.mark.parametrize(
    "name", ["", "../x", "a/../../x", "/abs", "a//b", "a/./b", "a/", "a\\b", "a\x00b", "x" * 1025]
)
def test_names_cannot_escape(store: Fixture, name: str) -> None:
    objects, bucket = store.objects, store.bucket
    with pytest.raises(InvalidArgument):
        objects.write(bucket, name, b"x")
    with pytest.raises(InvalidArgument):
        objects.open(bucket, name)
    with pytest.raises(InvalidArgument):
        objects.delete(bucket, name)


@pytest.mark.parametrize("bucket", ["", "..", ".tmp", "A", "a/b", "ab", "a" * 300])
def test_invalid_bucket_names(store: Fixture, bucket: str) -> None:
    objects = store.objects
    with pytest.raises(InvalidArgument):
        objects.bucket_exists(bucket)
    with pytest.raises(InvalidArgument):
        objects.write(bucket, "a", b"x")
    with pytest.raises(InvalidArgument):
        list(objects.list(bucket, ""))


def test_local_layout_and_symlinks(tmp_path: Path) -> None:
    """Embedded mode only: gs://BUCKET/OBJECT is ROOT/BUCKET/OBJECT, and nothing leaks out."""
    root = tmp_path / "gcs"
    objects = DirObjectStorage(root, fsync=False)
    (root / "inbox" / "sub").mkdir(parents=True)
    (root / "inbox" / "sub" / "dropped.dcm").write_bytes(b"dropped")
    assert objects.read("inbox", "sub/dropped.dcm") == b"dropped"
    objects.write("inbox", "out/x.dcm", b"x")
    assert (root / "inbox" / "out" / "x.dcm").read_bytes() == b"x"
    secret = tmp_path / "secret.txt"
    secret.write_text("outside")
    (root / "inbox" / "link.dcm").symlink_to(secret)
    (root / "inbox" / "linkdir").symlink_to(tmp_path, target_is_directory=True)
    with pytest.raises(NotFound):
        objects.read("inbox", "link.dcm")
    with pytest.raises(NotFound):
        objects.read("inbox", "linkdir/secret.txt")
    assert [i.name for i in objects.list("inbox", "")] == ["out/x.dcm", "sub/dropped.dcm"]
    assert list(objects.list("inbox", "linkdir/")) == []
    assert not list((root / ".tmp").iterdir())  # temp files never stay behind


def test_local_names_that_a_directory_cannot_hold(tmp_path: Path) -> None:
    """Cloud Storage holds both "a" and "a/b"; a directory tree cannot (409, nothing written)."""
    objects = DirObjectStorage(tmp_path, fsync=False)
    (tmp_path / "bkt").mkdir()
    objects.write("bkt", "a", b"file")
    with pytest.raises(Conflict):
        objects.write("bkt", "a/b", b"x")
    objects.write("bkt", "c/d", b"x")
    with pytest.raises(Conflict):
        objects.write("bkt", "c", b"x")
    assert [i.name for i in objects.list("bkt", "")] == ["a", "c/d"]
    assert not list((tmp_path / ".tmp").iterdir())
