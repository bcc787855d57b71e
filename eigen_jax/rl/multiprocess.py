"""GRPO across processes: each process rolls out its own tasks on its own devices, the learner
trains on the global batch of every process's episodes.

Sampling is per-process work (each process's sessions, prompts and stopping times differ), so the
sampler and an in-process user model run on a mesh of this process's devices with a full copy of
the weights; the learner's step is one program over the global mesh. In one process all of this
reduces to the plain single-mesh path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from eigen_jax import multihost
from eigen_jax import sharding as shd

BATCH_DTYPES = {
    "tokens": np.int32,
    "positions": np.int32,
    "segment_ids": np.int32,
    "loss_mask": np.int32,
    "advantages": np.float32,
    "behaviour_logprobs": np.float32,
    "score_index": np.int32,
}


def rollout_mesh(mesh):
    """The sampler's mesh: the training mesh in one process, else this process's devices."""
    if jax.process_count() == 1:
        return mesh
    return shd.make_mesh((1, -1, 1), devices=jax.local_devices())


def gather_to_host(tree: Any) -> Any:
    """Global arrays → full numpy copies on every process (a collective: all must call it)."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return multihost_utils.process_allgather(tree, tiled=True)


def local_model(model: nnx.Module, mesh) -> nnx.Module:
    """`model` (on the global mesh) as a copy on `mesh` (this process's devices)."""
    if jax.process_count() == 1:
        return model
    graphdef, state = nnx.split(model)
    copy = nnx.merge(graphdef, gather_to_host(state))
    return shd.shard_model(copy, mesh)


def sync_engine_params(engine, graphdef, params, rest) -> None:
    """New learner weights into the engine; across processes each gets a full local copy."""
    from eigen_jax.rl.rollout import sync_engine_params as sync_local

    if jax.process_count() == 1:
        return sync_local(engine, graphdef, params, rest)
    _, state = nnx.split(nnx.merge(graphdef, params, rest))
    host = gather_to_host(state)
    shardings = jax.tree.map(lambda x: x.sharding, engine.params)
    engine.update_params(jax.device_put(host, shardings))


def my_task_indices(num_tasks: int) -> list[int]:
    """Indices of a round's tasks this process rolls out (round-robin: disjoint, covering)."""
    return multihost.split_evenly(list(range(num_tasks)))


def global_count(n: int) -> int:
    return int(sum(multihost.allgather_json(int(n))))


def episode_summaries(played: Sequence[Any], group_size: int) -> dict[str, list]:
    """The per-episode numbers the step's statistics need, from every process."""
    mine = {
        "reward": [e.reward for e in played],
        "length": [e.length for e in played],
        "turns": [e.num_turns for e in played],
        "finish": [e.finish_reason for e in played],
        "informative": [
            len({e.reward for e in played[g : g + group_size]}) > 1
            for g in range(0, len(played), group_size)
        ],
    }
    out: dict[str, list] = {k: [] for k in mine}
    for part in multihost.allgather_json(mine):
        for k, v in part.items():
            out[k] += v
    return out


def empty_batch() -> dict[str, np.ndarray]:
    """A process that kept no group this step still feeds rows: all padding (mask 0)."""
    return {k: np.zeros((0, 0), d) for k, d in BATCH_DTYPES.items()}


def agreed_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """Element-wise largest local batch shape over processes: every process's rows must have
    one shape for `jax.make_array_from_process_local_data`."""
    shapes = multihost.allgather_json(list(shape))
    return tuple(int(max(s[i] for s in shapes)) for i in range(len(shape)))


def local_row_multiple(row_multiple: int) -> int:
    """Rows per process such that the global row count is a multiple of `row_multiple`."""
    count = jax.process_count()
    return row_multiple // count if row_multiple % count == 0 else row_multiple
