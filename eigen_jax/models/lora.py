"""LoRA adapters (Hu et al. 2021) on the attention projections, MLPs and MoE experts/router.

A targeted weight W gains two factors: A [*in, r] and B [r, *out] (B zero at init, so the model
starts as its base), and the layer computes x W + (alpha / r) * (dropout(x) A) B. The factors
are `LoRA` variables, a type of their own rather than `nnx.Param`, so one `nnx.split(model,
LoRA, nnx.Param, ...)` separates what trains (the adapters) from the frozen base: the optimizer
never sees the base and gradients are taken with respect to the adapters only
(`train.state.split_trainable`). Each factor is sharded like its base weight on the side it
shares with it (A on the input axes, B on the output axes; the rank axis replicated) and gains
the decoder stack's leading `layers` axis like every block parameter, so scanned layers, remat
and the mesh rules need nothing new.

MoE expert (and router) adapters are added to their weights before the expert kernels run
(W + scale * A B, one layer at a time): the grouped-matmul kernels take weights, not a side
path. Dense weights keep the factored side path, so LoRA saves the weight-gradient matmuls there.

Two trace-time switches (context managers, read while a function is traced):
`adapters_off()` runs the base alone (GRPO's KL reference: the base is the reference, no copy of
it), `dropout_key(key)` turns adapter dropout on (the train step sets it; evaluation and the
sampler never do, so they run without dropout).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import threading
import zlib
from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

DENSE_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
MOE_TARGETS = ("experts", "router")
_DTYPES = ("float32", "bfloat16", "float16")


@dataclasses.dataclass(frozen=True)
class LoraConfig:
    """rank r, alpha (the update is scaled by alpha / r, PEFT's convention), dropout on the
    adapter's input, and the targeted weights by PEFT's module names (`DENSE_TARGETS`; for
    Qwen3-MoE also "experts": every expert's gate/up/down, and "router"); `dtype` is the
    adapters' storage dtype (float32 while the base may be kept in bfloat16); `seed` draws A."""

    rank: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    targets: tuple[str, ...] = DENSE_TARGETS
    dtype: str = "float32"
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "targets", tuple(self.targets))
        if int(self.rank) < 1:
            raise ValueError(f"LoraConfig.rank must be >= 1, got {self.rank}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"LoraConfig.dropout must be in [0, 1), got {self.dropout}")
        unknown = sorted(set(self.targets) - set(DENSE_TARGETS + MOE_TARGETS))
        if unknown or not self.targets:
            raise ValueError(
                f"LoraConfig.targets {list(self.targets)}: unknown {unknown}; "
                f"expected names from {list(DENSE_TARGETS + MOE_TARGETS)}"
            )
        if self.dtype not in _DTYPES:
            raise ValueError(f"LoraConfig.dtype={self.dtype!r}; expected one of {_DTYPES}")

    @property
    def scale(self) -> float:
        return float(self.alpha) / int(self.rank)


class LoRA(nnx.Variable):
    """An adapter factor: trained while the `nnx.Param` base stays frozen."""


_SWITCHES = threading.local()


@contextlib.contextmanager
def adapters_off():
    """Trace the model without its adapters (the base model, exactly)."""
    before = getattr(_SWITCHES, "off", False)
    _SWITCHES.off = True
    try:
        yield
    finally:
        _SWITCHES.off = before


@contextlib.contextmanager
def dropout_key(key: jax.Array | None):
    """Adapter dropout draws from `key` inside this context (None: no dropout)."""
    before = getattr(_SWITCHES, "key", None)
    _SWITCHES.key = key
    try:
        yield
    finally:
        _SWITCHES.key = before


@contextlib.contextmanager
def for_layer(layer):
    """Per-layer dropout masks: fold the (possibly traced) layer index into the key."""
    key = getattr(_SWITCHES, "key", None)
    with dropout_key(None if key is None else jax.random.fold_in(key, layer)):
        yield


def _uniform_fan_in(fan_in: int):
    """PEFT's A init (kaiming_uniform with a = sqrt(5)): U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    bound = 1.0 / math.sqrt(fan_in)
    return lambda key, shape, dtype: jax.random.uniform(key, shape, dtype, -bound, bound)


class Adapter(nnx.Module):
    """A [*lead, *in, r] and B [*lead, r, *out] for one base weight [*lead, *in, *out]; `lead`
    is the expert axis of MoE expert weights (then the adapter is merged into the weight)."""

    def __init__(
        self,
        lora: LoraConfig,
        name: str,
        in_shape: Sequence[int],
        out_shape: Sequence[int],
        in_axes: Sequence[str | None],
        out_axes: Sequence[str | None],
        *,
        rngs: nnx.Rngs,
        experts: int = 0,
    ):
        r, dtype = int(lora.rank), jnp.dtype(lora.dtype)
        lead, lead_axes = ((experts,), ("expert",)) if experts else ((), ())
        a_shape = lead + tuple(in_shape) + (r,)
        self.a = LoRA(
            _uniform_fan_in(math.prod(in_shape))(rngs.params(), a_shape, dtype),
            out_sharding=lead_axes + tuple(in_axes) + (None,),
            eager_sharding=False,
        )
        self.b = LoRA(
            jnp.zeros(lead + (r,) + tuple(out_shape), dtype),
            out_sharding=lead_axes + (None,) + tuple(out_axes),
            eager_sharding=False,
        )
        self.scale = lora.scale
        self.dropout = float(lora.dropout)
        self.n_in = len(in_shape)
        self.salt = zlib.crc32(name.encode())

    def __call__(self, x: jax.Array, dtype) -> jax.Array | None:
        """(alpha / r) * dropout(x) A B for x [..., *in] -> [..., *out]; None when off."""
        if getattr(_SWITCHES, "off", False):
            return None
        key = getattr(_SWITCHES, "key", None)
        if self.dropout > 0 and key is not None:
            keep = jax.random.bernoulli(
                jax.random.fold_in(key, self.salt), 1.0 - self.dropout, x.shape
            )
            x = jnp.where(keep, x / (1.0 - self.dropout), 0).astype(x.dtype)
        h = jnp.tensordot(x, self.a[...].astype(dtype), axes=self.n_in)
        return jnp.tensordot(h, self.b[...].astype(dtype), axes=1) * jnp.asarray(self.scale, dtype)

    def merged(self, weight: jax.Array) -> jax.Array:
        """weight + (alpha / r) A B (weight [*lead, *in, *out]; unchanged when off)."""
        if getattr(_SWITCHES, "off", False):
            return weight
        return weight + delta_weight(self.a[...], self.b[...], weight.ndim, self.scale).astype(
            weight.dtype
        )


def delta_weight(a: jax.Array, b: jax.Array, weight_ndim: int, scale: float) -> jax.Array:
    """scale * A B in the base weight's layout, batched over the leading axes the two factors
    share (experts, stacked layers): a [*lead, *in, r], b [*lead, r, *out] -> [*lead, *in, *out],
    with len(lead) = a.ndim + b.ndim - 2 - weight_ndim. Computed in float32."""
    n_lead = a.ndim + b.ndim - 2 - weight_ndim
    lead = a.shape[:n_lead]
    in_shape, out_shape = a.shape[n_lead:-1], b.shape[n_lead + 1 :]
    a2 = a.reshape(lead + (math.prod(in_shape), a.shape[-1])).astype(jnp.float32)
    b2 = b.reshape(lead + (b.shape[n_lead], math.prod(out_shape))).astype(jnp.float32)
    return (jnp.matmul(a2, b2) * scale).reshape(lead + in_shape + out_shape)


def make_adapter(
    lora: LoraConfig | None,
    target: str,
    in_shape,
    out_shape,
    in_axes,
    out_axes,
    rngs: nnx.Rngs,
    experts: int = 0,
) -> Adapter | None:
    """The adapter of `target` when the config targets it, else None."""
    if lora is None or target not in lora.targets:
        return None
    return Adapter(lora, target, in_shape, out_shape, in_axes, out_axes, rngs=rngs, experts=experts)


def add_delta(y: jax.Array, adapter: Adapter | None, x: jax.Array, dtype) -> jax.Array:
    """y + the adapter's update of x (y itself without an adapter or with adapters off)."""
    delta = None if adapter is None else adapter(x, dtype)
    return y if delta is None else y + delta.astype(y.dtype)


def merged_weight(weight: jax.Array, adapter: Adapter | None) -> jax.Array:
    return weight if adapter is None else adapter.merged(weight)
