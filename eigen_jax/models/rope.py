"""Rotary position embeddings (HF "rotate half" layout) with Llama-3 and linear scaling.

Inverse frequencies are computed once on the host in float64 (as transformers does in float32
from the same formula) so that long-context scaling matches the reference bit-for-bit in f32.
Angles are always computed in float32: bf16 positions lose integer precision beyond 256.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np


def inverse_frequencies(
    head_dim: int, theta: float, scaling: Mapping[str, Any] | None = None
) -> np.ndarray:
    """`[head_dim // 2]` float32 inverse frequencies, with the config's rope scaling applied."""
    inv_freq = 1.0 / (
        theta ** (np.arange(0, head_dim, 2, dtype=np.int64).astype(np.float32) / head_dim)
    )
    if not scaling:
        return inv_freq.astype(np.float32)
    rope_type = scaling.get("rope_type", "default")
    if rope_type == "linear":
        return (inv_freq / float(scaling["factor"])).astype(np.float32)
    if rope_type == "llama3":
        return _llama3_scale(inv_freq, scaling)
    if rope_type == "default":
        return inv_freq.astype(np.float32)
    raise ValueError(f"unsupported rope_type {rope_type!r}")


def _llama3_scale(inv_freq: np.ndarray, scaling: Mapping[str, Any]) -> np.ndarray:
    """Llama 3.1 frequency-dependent scaling: long wavelengths slowed by `factor`, short kept,
    a smooth interpolation in between."""
    try:
        factor = float(scaling["factor"])
        low = float(scaling["low_freq_factor"])
        high = float(scaling["high_freq_factor"])
        original = float(scaling["original_max_position_embeddings"])
    except KeyError as err:
        raise ValueError(f"llama3 rope_scaling is missing key {err.args[0]!r}") from None
    low_freq_wavelen = original / low
    high_freq_wavelen = original / high
    wavelen = 2 * math.pi / inv_freq
    scaled = np.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
    smooth = (original / wavelen - low) / (high - low)
    smoothed = (1 - smooth) * scaled / factor + smooth * scaled
    medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
    return np.where(medium, smoothed, scaled).astype(np.float32)


def apply_rope(x: jnp.ndarray, positions: jnp.ndarray, inv_freq) -> jnp.ndarray:
    """Rotate `x` [B, T, heads, head_dim] by angles `positions[b, t] * inv_freq`."""
    angles = (
        positions.astype(jnp.float32)[..., None] * jnp.asarray(inv_freq, jnp.float32)[None, None, :]
    )
    angles = jnp.concatenate([angles, angles], axis=-1)[:, :, None, :]  # [B, T, 1, head_dim]
    cos, sin = jnp.cos(angles), jnp.sin(angles)
    xf = x.astype(jnp.float32)
    half = x.shape[-1] // 2
    rotated = jnp.concatenate([-xf[..., half:], xf[..., :half]], axis=-1)
    return (xf * cos + rotated * sin).astype(x.dtype)
