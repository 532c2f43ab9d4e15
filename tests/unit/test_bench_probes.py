"""The benchmark's disk probe measures every file operation a durable STOW needs."""

from __future__ import annotations

from pathlib import Path

from bench import probes


def test_disk_costs_times_each_operation_and_cleans_up(tmp_path: Path) -> None:
    costs = probes.disk_costs(tmp_path)

    assert set(costs) == {
        "create_ms",
        "write_fresh_ms",
        "write_recycled_ms",
        "fsync_ms",
        "link_and_dir_fsync_ms",
        "dir_fsync_ms",
    }
    assert all(value > 0 for value in costs.values()), costs
    assert list(tmp_path.iterdir()) == []
