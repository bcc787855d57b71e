"""Split work items across worker processes or hosts by index, with no coordination.

Worker ``i`` of ``n`` owns the items whose index satisfies ``index % n == i``. Interleaving (not
contiguous blocks) keeps the workers' loads even when item cost drifts along the list, and a
worker's share is a pure function of (i, n), so a crashed worker can be restarted alone.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")


def _check(worker_index: int, num_workers: int) -> None:
    if not isinstance(num_workers, int) or num_workers < 1:
        raise ValueError(f"num_workers must be a positive int, got {num_workers!r}")
    if not isinstance(worker_index, int) or not 0 <= worker_index < num_workers:
        raise ValueError(f"worker_index must be in [0, {num_workers}), got {worker_index!r}")


def owns(index: int, worker_index: int, num_workers: int) -> bool:
    """Whether worker ``worker_index`` of ``num_workers`` is responsible for item ``index``."""
    _check(worker_index, num_workers)
    if index < 0:
        raise ValueError(f"item index must be >= 0, got {index}")
    return index % num_workers == worker_index


def shard(items: Iterable[T], worker_index: int, num_workers: int) -> Iterator[tuple[int, T]]:
    """Yield ``(global_index, item)`` for the items this worker owns; lazy, any iterable."""
    _check(worker_index, num_workers)
    for index, item in enumerate(items):
        if index % num_workers == worker_index:
            yield index, item


def worker_from_env(
    index_var: str = "EIGEN_WORKER_INDEX", count_var: str = "EIGEN_NUM_WORKERS"
) -> tuple[int, int]:
    """Read ``(worker_index, num_workers)`` from the environment; ``(0, 1)`` when unset.

    Launchers (SLURM arrays, k8s indexed jobs, a shell loop) set two variables; the names are
    arguments so e.g. ``worker_from_env("SLURM_ARRAY_TASK_ID", "SLURM_ARRAY_TASK_COUNT")`` works.
    """
    raw_index, raw_count = os.environ.get(index_var), os.environ.get(count_var)
    if raw_index is None and raw_count is None:
        return 0, 1
    if raw_index is None or raw_count is None:
        raise ValueError(f"set both {index_var} and {count_var}, or neither")
    try:
        worker_index, num_workers = int(raw_index), int(raw_count)
    except ValueError:
        raise ValueError(
            f"{index_var}={raw_index!r} and {count_var}={raw_count!r} must be integers"
        ) from None
    _check(worker_index, num_workers)
    return worker_index, num_workers
