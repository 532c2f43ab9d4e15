"""Contract suite for OperationStore: shard results count once, done happens once."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from shared.adapters.local.sqlite_operations import SqliteOperationStore
from shared.domain.operations import API_DELETE_STUDY, Operation
from shared.errors import AlreadyExists, InvalidArgument, NotFound
from shared.ports.operations import OperationStore

DATASET = "projects/p/locations/l/datasets/d"


@pytest.fixture(params=["local", "gcp"])
def operations(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[OperationStore]:
    if request.param == "gcp":
        from shared.adapters.gcp.firestore_operations import FirestoreOperationStore

        firestore = request.getfixturevalue("firestore_emulator")
        firestore.reset()
        yield FirestoreOperationStore(firestore.client)
        return
    yield SqliteOperationStore(tmp_path / "operations.sqlite")


def _new(store: OperationStore, number: int = 1) -> Operation:
    return store.create(
        Operation(name=f"{DATASET}/operations/{number}", api_method_name=API_DELETE_STUDY)
    )


def test_create_get_shape(operations: OperationStore) -> None:
    op = _new(operations)
    body = operations.get(op.name).to_json()
    assert body["name"] == op.name
    assert body["metadata"]["apiMethodName"] == API_DELETE_STUDY
    assert body["metadata"]["createTime"].endswith("Z")
    assert "done" not in body and "response" not in body
    with pytest.raises(AlreadyExists):
        _new(operations)
    with pytest.raises(NotFound):
        operations.get(f"{DATASET}/operations/999")


def test_counters_derive_from_shards_and_redelivery_is_ignored(operations: OperationStore) -> None:
    op = _new(operations)
    operations.set_plan(op.name, items=10, shards=2)
    assert operations.get(op.name).pending == 10
    assert operations.record_shard(op.name, "0", 4, 1, [{"resource": "x", "error": "bad"}])
    assert not operations.record_shard(op.name, "0", 4, 1, [])
    got = operations.get(op.name)
    assert (got.success, got.failure, got.pending, got.shards_done) == (4, 1, 5, 1)
    assert operations.record_shard(op.name, "1", 5, 0, [])
    got = operations.get(op.name)
    assert (got.success, got.failure, got.pending, got.shards_done) == (9, 1, 0, 2)
    assert got.to_json()["metadata"]["counter"] == {"success": "9", "failure": "1"}


def test_finish_happens_exactly_once(operations: OperationStore) -> None:
    op = _new(operations)
    results: list[bool] = []
    threads = [
        threading.Thread(target=lambda: results.append(operations.finish(op.name, response={})))
        for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results.count(True) == 1
    body = operations.get(op.name).to_json()
    assert body["done"] is True and "endTime" in body["metadata"]


def test_cancel_ends_with_cancelled(operations: OperationStore) -> None:
    op = _new(operations)
    operations.request_cancel(op.name)
    body = operations.get(op.name).to_json()
    assert body["done"] is True
    assert body["error"]["code"] == 1
    assert body["metadata"]["cancelRequested"] is True


def test_list_pages_newest_first(operations: OperationStore) -> None:
    for number in range(1, 6):
        _new(operations, number)
    page, token = operations.list_operations(DATASET, 2, None)
    names = [op.operation_id for op in page]
    while token:
        page, token = operations.list_operations(DATASET, 2, token)
        names += [op.operation_id for op in page]
    assert names == ["5", "4", "3", "2", "1"]
    with pytest.raises(InvalidArgument):
        operations.list_operations(DATASET, 2, "garbage!")
