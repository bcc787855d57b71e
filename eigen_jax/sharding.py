"""Device mesh, logical-axis rules and placement helpers (T5X style).

Code names array dimensions *logically* (`"batch"`, `"embed"`, `"heads"`, ...); one short rules
table maps logical names to the mesh axes `("data", "fsdp", "tensor")`. Changing the parallelism
layout is then a mesh shape, never a model edit. Resolution is shape-aware: a dimension that the
mapped mesh axes do not divide (e.g. 2 kv heads on a 4-way tensor axis), or a mesh axis already
used by an earlier dimension, falls back to replication for that dimension instead of failing.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "tensor")

# logical name -> mesh axes (a name, a tuple of names, or None for replicated).
LOGICAL_AXIS_RULES: tuple[tuple[str, Any], ...] = (
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("activation_length", "tensor"),  # the residual stream: sequence-parallel (Megatron-SP)
    ("layers", None),  # the scanned decoder stack's leading axis: every chip holds every layer
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("expert", "fsdp"),  # MoE experts: gathered per layer like FSDP weights (models/moe.py)
    ("vocab", "tensor"),
)

LogicalAxes = Sequence[str | None]


def make_mesh(
    shape: Sequence[int] | None = None,
    devices: Sequence[jax.Device] | None = None,
    axis_names: Sequence[str] = MESH_AXES,
) -> Mesh:
    """A mesh with `Auto` axis types (NNX sharding annotations need Auto, not Explicit).

    `shape` defaults to all devices on `fsdp`; one entry may be -1 (inferred).
    """
    devices = list(devices if devices is not None else jax.devices())
    shape = list(shape) if shape is not None else [1, len(devices), 1]
    if len(shape) != len(axis_names):
        raise ValueError(f"mesh shape {tuple(shape)} needs one size per axis {tuple(axis_names)}")
    if shape.count(-1) > 1:
        raise ValueError(f"at most one mesh dimension may be -1, got {tuple(shape)}")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        shape[shape.index(-1)] = len(devices) // known if known else 0
    if math.prod(shape) != len(devices) or min(shape) < 1:
        raise ValueError(
            f"mesh shape {tuple(shape)} does not use exactly the {len(devices)} available devices"
        )
    axis_types = (AxisType.Auto,) * len(axis_names)
    try:
        return jax.make_mesh(
            tuple(shape), tuple(axis_names), axis_types=axis_types, devices=devices
        )
    except NotImplementedError:
        # A logical axis that is no product of whole torus axes (tensor 4 on a v6e 8x16): split
        # a physical axis rather than refuse the mesh (launch/compile.py found this).
        from jax.experimental import mesh_utils

        grid = mesh_utils.create_device_mesh(tuple(shape), devices, allow_split_physical_axes=True)
        return Mesh(grid, tuple(axis_names), axis_types=axis_types)


def _mesh_axis_sizes(mesh) -> dict[str, int]:
    return dict(zip(mesh.axis_names, mesh.axis_sizes))


def logical_to_spec(
    logical_axes: LogicalAxes,
    shape: Sequence[int] | None = None,
    mesh: Mesh | None = None,
    rules=LOGICAL_AXIS_RULES,
) -> PartitionSpec:
    """Resolve logical names to a `PartitionSpec` for an array of `shape` on `mesh`.

    Without `shape`/`mesh` no divisibility check is made. Each mesh axis is used at most once;
    for a multi-axis rule the longest prefix that divides the dimension is kept.
    """
    table = dict(rules)
    sizes = _mesh_axis_sizes(mesh) if mesh is not None else None
    if shape is not None and len(shape) != len(logical_axes):
        raise ValueError(f"logical axes {tuple(logical_axes)} do not match shape {tuple(shape)}")
    used: set[str] = set()
    out = []
    for dim, name in enumerate(logical_axes):
        if name is not None and name not in table:
            raise ValueError(f"logical axis {name!r} has no rule; known: {sorted(table)}")
        target = table.get(name) if name is not None else None
        axes = (target,) if isinstance(target, str) else tuple(target or ())
        if sizes is not None:
            axes = tuple(a for a in axes if a in sizes)
        keep: tuple[str, ...] = ()
        for n in range(len(axes), 0, -1):
            cand = axes[:n]
            if used.intersection(cand):
                continue
            if (
                shape is not None
                and sizes is not None
                and shape[dim] % math.prod(sizes[a] for a in cand)
            ):
                continue
            keep = cand
            break
        used.update(keep)
        out.append(None if not keep else keep[0] if len(keep) == 1 else keep)
    return PartitionSpec(*out)


def logical_to_sharding(
    logical_axes: LogicalAxes,
    mesh: Mesh,
    shape: Sequence[int] | None = None,
    rules=LOGICAL_AXIS_RULES,
) -> NamedSharding:
    return NamedSharding(mesh, logical_to_spec(logical_axes, shape, mesh, rules))


def with_logical_constraint(
    x: jax.Array, logical_axes: LogicalAxes, rules=LOGICAL_AXIS_RULES
) -> jax.Array:
    """Sharding constraint by logical names; a no-op when no mesh is set (`jax.set_mesh`)."""
    mesh = jax.sharding.get_abstract_mesh()
    if mesh is None or mesh.empty:
        return x
    spec = logical_to_spec(logical_axes, x.shape, mesh, rules)
    return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, spec))


def variable_logical_axes(variable: nnx.Variable) -> tuple[str | None, ...]:
    """The logical names stored on a variable (replicated when it has none)."""
    axes = variable.get_metadata().get("out_sharding")
    return tuple(axes) if axes else (None,) * len(variable.shape)


def state_shardings(tree: Any, mesh: Mesh, rules=LOGICAL_AXIS_RULES) -> Any:
    """NamedSharding for every variable of a module or `nnx.State` (abstract or concrete)."""
    state = nnx.state(tree) if isinstance(tree, nnx.Module) else tree

    def one(v):
        if isinstance(v, nnx.Variable):
            return v.replace(logical_to_sharding(variable_logical_axes(v), mesh, v.shape, rules))
        return NamedSharding(mesh, PartitionSpec())

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def shard_model(model: nnx.Module, mesh: Mesh, rules=LOGICAL_AXIS_RULES) -> nnx.Module:
    """Move every variable of `model` onto `mesh` following its logical names (in place)."""
    state = nnx.state(model)
    shardings = state_shardings(state, mesh, rules)
    nnx.update(model, jax.device_put(state, shardings))
    return model


def batch_sharding(
    mesh: Mesh, ndim: int = 2, rules=LOGICAL_AXIS_RULES, shape: Sequence[int] | None = None
) -> NamedSharding:
    """Sharding of a `[batch, ...]` array: batch on the batch mesh axes, the rest replicated."""
    return logical_to_sharding(("batch",) + (None,) * (ndim - 1), mesh, shape, rules)


def data_parallel_size(mesh: Mesh, rules=LOGICAL_AXIS_RULES) -> int:
    """How many ways a global batch's rows are split: the product of the mesh axes that the
    logical `batch` axis maps to. A global batch size must be a multiple of it."""
    axes = dict(rules)["batch"]
    axes = (axes,) if isinstance(axes, str) else tuple(axes or ())
    sizes = _mesh_axis_sizes(mesh)
    return math.prod(sizes.get(a, 1) for a in axes)


def to_global_batch(batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Process-local `[rows, ...]` host arrays → global arrays sharded on the batch axes: each
    process contributes its own rows (the multi-host contract of every train step)."""
    return {
        k: jax.make_array_from_process_local_data(batch_sharding(mesh, np.ndim(v)), np.asarray(v))
        for k, v in batch.items()
    }


# ---------------------------------------------------------------------------- multi-host
def initialize_distributed(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    **kwargs,
) -> bool:
    """`jax.distributed.initialize` from the launch flags when given, else from a multi-host
    launcher's environment (TPU VM, SLURM, Open MPI); True when this is a multi-process run.

    Single-process runs (no flags, no such variables) are untouched, so the same entry point
    works on a laptop and on a pod (`eigen_jax.multihost.initialize`).
    """
    from eigen_jax import multihost

    return multihost.initialize(coordinator_address, num_processes, process_id, **kwargs)
