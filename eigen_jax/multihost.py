"""What every process of a multi-process (multi-host) jax program needs besides the mesh.

A pod slice runs one jax program in many processes (`jax.distributed`). Work that scales (data
rows, GRPO episodes, evaluation trials) is split by process; work that writes a shared file (data,
tokenizer, reports, metrics, HF export) runs on process 0 while the others wait at a barrier and
then read what it wrote. These helpers are the few collectives that make that safe; in a single
process each of them is a no-op or the identity, so the same code runs on a laptop.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np

# Launcher environments in which `jax.distributed.initialize()` finds its arguments by itself.
AUTO_DETECT_ENV = (
    "JAX_COORDINATOR_ADDRESS",
    "COORDINATOR_ADDRESS",
    "SLURM_JOB_ID",
    "OMPI_COMM_WORLD_SIZE",
    "TPU_WORKER_HOSTNAMES",
    "MEGASCALE_COORDINATOR_ADDRESS",
)


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    **kwargs,
) -> bool:
    """`jax.distributed.initialize` from explicit flags, or from a launcher's environment (TPU VM,
    SLURM, Open MPI) when no flag is given. Returns True when this is a multi-process run.

    Explicit flags win: a local N-process run (or a cluster jax cannot detect) names the
    coordinator, the process count and this process's index. `num_processes=1` is a plain
    single-process run. CPU processes talk through gloo collectives (XLA's CPU client has none
    by default in older jax).
    """
    given = {
        k: v
        for k, v in (
            ("coordinator_address", coordinator_address),
            ("num_processes", num_processes),
            ("process_id", process_id),
        )
        if v is not None
    }
    if num_processes == 1:
        return False
    if not given and not any(os.environ.get(k) for k in AUTO_DETECT_ENV):
        return False
    if given and not any(os.environ.get(k) for k in AUTO_DETECT_ENV) and len(given) < 3:
        missing = sorted({"coordinator_address", "num_processes", "process_id"} - set(given))
        raise ValueError(
            f"multi-process run without a launcher environment needs "
            f"--coordinator_address, --num_processes and --process_id; missing "
            f"{missing}"
        )
    if (
        num_processes is not None
        and process_id is not None
        and not (0 <= process_id < num_processes)
    ):
        raise ValueError(f"process_id={process_id} is not in [0, {num_processes})")
    if jax.distributed.is_initialized():
        return True
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**given, **kwargs)
    return jax.process_count() > 1


def is_primary() -> bool:
    """Process 0: the one that writes shared files."""
    return jax.process_index() == 0


def barrier(name: str) -> None:
    """Every process waits here until all have arrived (no-op in one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def primary_first(name: str, fn: Callable[[], Any]) -> Any:
    """Run `fn` on process 0 while the others wait, then return its (JSON-able) result on every
    process: the single-writer pattern (process 0 writes, the others read what it wrote).

    A failure on process 0 is broadcast, so every process raises instead of the others waiting
    forever.
    """
    if jax.process_count() == 1:
        return fn()
    result, error = None, None
    if is_primary():
        try:
            result = fn()
        except BaseException as e:  # noqa: BLE001 - tell the others, then re-raise
            error = e
    message = broadcast_json(
        {
            "error": repr(error) if error is not None else None,
            "result": result if error is None else None,
        }
    )
    if error is not None:
        raise error
    if message["error"]:
        raise RuntimeError(f"{name} failed on process 0: {message['error']}")
    return message["result"]


def any_process(flag: bool) -> bool:
    """True when `flag` is True on any process (e.g. a SIGTERM that reached one host only)."""
    if jax.process_count() == 1:
        return bool(flag)
    from jax.experimental import multihost_utils

    flags = multihost_utils.process_allgather(np.array([int(bool(flag))], np.int32))
    return bool(np.asarray(flags).any())


def allgather_json(value: Any) -> list[Any]:
    """Every process's JSON-able `value`, in process order (on every process)."""
    if jax.process_count() == 1:
        return [value]
    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(value).encode(), np.uint8)
    sizes = np.asarray(multihost_utils.process_allgather(np.array([data.size], np.int64)))
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: data.size] = data
    gathered = np.asarray(multihost_utils.process_allgather(padded)).reshape(len(sizes), -1)
    return [json.loads(bytes(row[: int(n)]).decode()) for row, n in zip(gathered, sizes.ravel())]


def broadcast_json(value: Any) -> Any:
    """Process 0's JSON-able `value`, on every process."""
    return allgather_json(value)[0]


def split_evenly(
    items: Sequence[Any], index: int | None = None, count: int | None = None
) -> list[Any]:
    """This process's share of `items`: every `count`-th item from `index` (disjoint, covering,
    sizes differing by at most one)."""
    index = jax.process_index() if index is None else index
    count = jax.process_count() if count is None else count
    return list(items)[index::count]


def global_batch_from_host(
    batch: dict[str, np.ndarray], sharding_for: Callable[[np.ndarray], Any]
) -> dict[str, jax.Array]:
    """A batch every process holds in full → global arrays; each process transfers only the rows
    its own devices hold (whatever the device order of the mesh)."""
    out = {}
    for k, v in batch.items():
        v = np.asarray(v)
        out[k] = jax.make_array_from_callback(v.shape, sharding_for(v), lambda idx, v=v: v[idx])
    return out
