"""Model FLOPs per trained token and this device's achieved matmul peak (for MFU)."""

from __future__ import annotations

import time

import jax


def matmul_peak_flops(dtype="float32", n: int | None = None, repeats: int = 5) -> float:
    """Achieved FLOP/s of a large square jitted matmul: the practical peak of this device.

    n defaults to 2048 on CPU and 8192 on accelerators (a 2048 product leaves a GPU's tensor
    cores under-filled, which would understate the peak and overstate MFU)."""
    if n is None:
        n = 2048 if jax.devices()[0].platform == "cpu" else 8192
    a = jax.random.normal(jax.random.key(0), (n, n), dtype)
    b = jax.random.normal(jax.random.key(1), (n, n), dtype)
    f = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(f(a, b))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(f(a, b))
        best = min(best, time.perf_counter() - t0)
    return 2 * n**3 / best


def train_flops_per_token(config, seq: int) -> float:
    """6 * active matmul params (an MoE token runs only its k experts) + causal attention (PaLM
    appendix B, 12 * L * H * hd * T halved for the causal mask): forward + backward FLOPs per
    trained token. The embedding lookup is no matmul and is excluded unless it doubles as the
    (tied) output projection."""
    matmul_params = config.num_params(active=True)
    if not config.tie_word_embeddings:
        matmul_params -= config.vocab_size * config.hidden_size
    attention = 12 * config.num_layers * config.num_heads * config.head_dim * seq / 2
    return 6 * matmul_params + attention
