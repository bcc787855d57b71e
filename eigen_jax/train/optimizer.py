"""Optimizer and learning-rate schedule (optax), every knob gin-configurable."""

from __future__ import annotations

import gin
import optax


@gin.configurable
def make_schedule(
    learning_rate: float = 1e-5,
    schedule: str = "constant",
    warmup_steps: int = 0,
    total_steps: int = 1000,
    end_lr_ratio: float = 0.1,
) -> optax.Schedule:
    """`constant` (after warmup) or `cosine` decay to `end_lr_ratio * learning_rate`."""
    if schedule == "constant":
        main = optax.constant_schedule(learning_rate)
    elif schedule == "cosine":
        main = optax.cosine_decay_schedule(
            learning_rate, max(total_steps - warmup_steps, 1), alpha=end_lr_ratio
        )
    else:
        raise ValueError(f"unknown schedule {schedule!r}; expected 'constant' or 'cosine'")
    if warmup_steps <= 0:
        return main
    warm = optax.linear_schedule(0.0, learning_rate, warmup_steps)
    return optax.join_schedules([warm, main], [warmup_steps])


@gin.configurable
def make_optimizer(
    schedule: optax.Schedule,
    weight_decay: float = 0.01,
    b1: float = 0.9,
    b2: float = 0.95,
    eps: float = 1e-8,
    clip_norm: float | None = 1.0,
) -> optax.GradientTransformation:
    """AdamW with global-norm clipping (the paper: Adam, wd 0.01, clip 1.0)."""
    parts = [optax.clip_by_global_norm(clip_norm)] if clip_norm else []
    parts.append(optax.adamw(schedule, b1=b1, b2=b2, eps=eps, weight_decay=weight_decay))
    return optax.chain(*parts)
