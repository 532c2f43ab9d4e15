"""SqliteIndex group commit: concurrent add_instance calls share transactions, not results."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from shared.adapters.local.sqlite_index import SqliteIndex, _PendingInsert
from shared.domain.records import StoreRecord
from shared.errors import NotFound
from tests.contract.test_index_contract import STORE_ID, STORE_NAME, make


@pytest.fixture
def index(tmp_path: Path) -> SqliteIndex:
    built = SqliteIndex(tmp_path / "index.sqlite")
    built.create_store(StoreRecord(name=STORE_NAME, store_id=STORE_ID))
    return built


def _slow_batches(index: SqliteIndex, sizes: list[int]) -> None:
    """Record each transaction's size; hold the first open so the others queue up."""
    real = index._group._insert_batch

    def insert(batch: list[_PendingInsert]) -> None:
        sizes.append(len(batch))
        if len(sizes) == 1:
            time.sleep(0.2)
        real(batch)

    index._group._insert_batch = insert


def _in_threads(count: int, work: object) -> list[object]:
    results: list[object] = [None] * count
    barrier = threading.Barrier(count)

    def body(n: int) -> None:
        barrier.wait()
        try:
            results[n] = work(n)  # type: ignore[operator]
        except Exception as error:
            results[n] = error

    threads = [threading.Thread(target=body, args=(n,)) for n in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    return results


def test_concurrent_inserts_share_commits_and_each_gets_its_row(index: SqliteIndex) -> None:
    sizes: list[int] = []
    _slow_batches(index, sizes)
    records = [make("1.1", "1.1.1", f"1.1.1.{n}", number=n) for n in range(8)]
    results = _in_threads(8, lambda n: index.add_instance(records[n]))
    assert results == records
    assert sum(sizes) == 8 and len(sizes) < 8
    assert len(index.list_instances(STORE_ID, "1.1")) == 8


def test_a_bad_record_fails_alone_in_a_shared_transaction(index: SqliteIndex) -> None:
    sizes: list[int] = []
    _slow_batches(index, sizes)
    records = [make("1.1", "1.1.1", f"1.1.1.{n}", number=n) for n in range(6)]
    records[3] = make("1.1", "1.1.1", "1.1.1.3", store_id="no-such-store")
    results = _in_threads(6, lambda n: index.add_instance(records[n]))
    assert isinstance(results[3], NotFound)
    assert [r for n, r in enumerate(results) if n != 3] == [
        r for n, r in enumerate(records) if n != 3
    ]
    assert len(index.list_instances(STORE_ID, "1.1")) == 5


def test_same_uids_in_one_transaction_one_wins_for_both(index: SqliteIndex) -> None:
    sizes: list[int] = []
    _slow_batches(index, sizes)
    records = [make("1.1", "1.1.1", "1.1.1.1", crc32c=f"{n}AAAAA==") for n in range(4)]
    results = _in_threads(4, lambda n: index.add_instance(records[n]))
    winners = {r.crc32c for r in results}  # type: ignore[attr-defined]
    assert len(winners) == 1
    assert sum(1 for n in range(4) if results[n] is records[n]) == 1
    assert len(index.list_instances(STORE_ID, "1.1")) == 1


def test_add_instances_commits_a_request_in_one_transaction(index: SqliteIndex) -> None:
    sizes: list[int] = []
    _slow_batches(index, sizes)
    records = [make("2.1", "2.1.1", f"2.1.1.{n}", number=n) for n in range(5)]
    assert index.add_instances(records) == records
    assert sizes == [5]


def test_add_instances_queued_behind_a_commit_share_the_next_one(index: SqliteIndex) -> None:
    sizes: list[int] = []
    _slow_batches(index, sizes)
    ahead = make("3.2", "3.2.1", "3.2.1.0")
    thread = threading.Thread(target=index.add_instance, args=(ahead,))
    thread.start()
    time.sleep(0.05)  # `ahead` now holds the first (slow) transaction
    others = [make("3.1", "3.1.1", f"3.1.1.{n}", number=n) for n in range(3)]
    assert index.add_instances(others) == others
    thread.join(timeout=30)
    assert sizes == [1, 3]
    assert index.get_instance(STORE_ID, "3.2", "3.2.1", "3.2.1.0") == ahead
