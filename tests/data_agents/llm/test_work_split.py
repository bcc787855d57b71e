"""Sharding work by index across workers: a partition, balanced, validated."""

from __future__ import annotations

import pytest

from data_agents.llm import owns, shard, worker_from_env


@pytest.mark.parametrize("num_items, num_workers", [(0, 1), (10, 1), (10, 3), (7, 7), (5, 8)])
def test_shards_partition_the_items(num_items, num_workers):
    items = [f"task-{i}" for i in range(num_items)]
    shards = [list(shard(iter(items), w, num_workers)) for w in range(num_workers)]
    seen = sorted(idx for part in shards for idx, _ in part)
    assert seen == list(range(num_items))  # disjoint and complete
    for w, part in enumerate(shards):
        assert all(items[idx] == item and idx % num_workers == w for idx, item in part)
        assert all(owns(idx, w, num_workers) for idx, _ in part)
    sizes = [len(part) for part in shards]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("worker, workers", [(0, 0), (-1, 2), (2, 2), (1.0, 2)])
def test_bad_worker_arguments(worker, workers):
    with pytest.raises(ValueError, match="worker_index|num_workers"):
        list(shard([1, 2], worker, workers))


def test_worker_from_env(monkeypatch):
    monkeypatch.delenv("EIGEN_WORKER_INDEX", raising=False)
    monkeypatch.delenv("EIGEN_NUM_WORKERS", raising=False)
    assert worker_from_env() == (0, 1)
    monkeypatch.setenv("EIGEN_WORKER_INDEX", "2")
    with pytest.raises(ValueError, match="set both"):
        worker_from_env()
    monkeypatch.setenv("EIGEN_NUM_WORKERS", "4")
    assert worker_from_env() == (2, 4)
    monkeypatch.setenv("EIGEN_NUM_WORKERS", "two")
    with pytest.raises(ValueError, match="must be integers"):
        worker_from_env()
    monkeypatch.setenv("EIGEN_NUM_WORKERS", "2")
    with pytest.raises(ValueError, match=r"worker_index must be in \[0, 2\)"):
        worker_from_env()
    with pytest.raises(ValueError, match="item index"):
        owns(-1, 0, 2)
