"""Small building blocks: logically-annotated parameters, RMSNorm, SwiGLU MLP.

Every parameter carries *logical* axis names (`"embed"`, `"mlp"`, ...) as `out_sharding`
metadata; `eigen_jax.sharding` maps them to mesh axes. Eager sharding is switched off per
variable so that building a model never needs a mesh and never interprets logical names as mesh
axes; placement happens explicitly (`sharding.shard_model`, `hf_io.from_pretrained`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from eigen_jax.models import lora as lora_lib
from eigen_jax.models.config import ModelConfig
from eigen_jax.sharding import with_logical_constraint

Initializer = Callable[[jax.Array, Sequence[int], jnp.dtype], jax.Array]
default_kernel_init = nnx.initializers.normal(stddev=0.02)


def make_param(
    rngs: nnx.Rngs,
    init: Initializer,
    shape: Sequence[int],
    dtype,
    logical_axes: Sequence[str | None],
) -> nnx.Param:
    """A parameter annotated with logical axis names (one per dimension)."""
    if len(logical_axes) != len(shape):
        raise ValueError(f"logical axes {logical_axes} do not match shape {tuple(shape)}")
    return nnx.Param(
        init(rngs.params(), tuple(shape), dtype),
        out_sharding=tuple(logical_axes),
        eager_sharding=False,
    )


class RMSNorm(nnx.Module):
    """RMSNorm computed in float32 (as HF does) and cast back to the compute dtype."""

    def __init__(
        self,
        dim: int,
        eps: float,
        *,
        dtype,
        param_dtype,
        rngs: nnx.Rngs,
        axes: tuple[str | None] = ("embed",),
    ):
        self.eps = eps
        self.dtype = dtype
        self.scale = make_param(rngs, nnx.initializers.ones, (dim,), param_dtype, axes)

    def __call__(self, x: jax.Array) -> jax.Array:
        xf = x.astype(jnp.float32)
        normed = xf * jax.lax.rsqrt(jnp.mean(xf * xf, axis=-1, keepdims=True) + self.eps)
        return normed.astype(self.dtype) * self.scale[...].astype(self.dtype)


class MLP(nnx.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        d, f, pdt = config.hidden_size, config.intermediate_size, config.weight_dtype
        self.dtype = config.compute_dtype
        self.gate = make_param(rngs, default_kernel_init, (d, f), pdt, ("embed", "mlp"))
        self.up = make_param(rngs, default_kernel_init, (d, f), pdt, ("embed", "mlp"))
        self.down = make_param(rngs, default_kernel_init, (f, d), pdt, ("mlp", "embed"))
        adapter = lambda name, i, o, ia, oa: lora_lib.make_adapter(  # noqa: E731
            config.lora, name, (i,), (o,), (ia,), (oa,), rngs
        )
        self.gate_lora = adapter("gate_proj", d, f, "embed", "mlp")
        self.up_lora = adapter("up_proj", d, f, "embed", "mlp")
        self.down_lora = adapter("down_proj", f, d, "mlp", "embed")

    def __call__(self, x: jax.Array) -> jax.Array:
        dt = self.dtype
        gate = jnp.einsum("btd,df->btf", x, self.gate[...].astype(dt))
        gate = lora_lib.add_delta(gate, self.gate_lora, x, dt)
        up = lora_lib.add_delta(
            jnp.einsum("btd,df->btf", x, self.up[...].astype(dt)), self.up_lora, x, dt
        )
        hidden = with_logical_constraint(jax.nn.silu(gate) * up, ("batch", "length", "mlp"))
        out = jnp.einsum("btf,fd->btd", hidden, self.down[...].astype(dt))
        return lora_lib.add_delta(out, self.down_lora, hidden, dt)
