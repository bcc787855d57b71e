"""How big a sampler is: declared once in gin, used by GRPO's policy, evaluation and the
in-process user simulator.

One declaration matters because an engine's programs are keyed by its shapes: an evaluation sized
like GRPO's policy reuses GRPO's compiled prefill and decode. Each consumer reads it in its own
gin scope (`eigen_jax.scopes`), so it inherits every size it does not override.
"""

from __future__ import annotations

import dataclasses

import gin

from eigen_jax.sampling.engine import Engine


@gin.configurable
@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """num_slots: sessions decoded at once (cache rows); max_len: a session's context, prompt
    and generated tokens together; max_prefill_len: longest prefill chunk (capped at max_len);
    steps_per_sync: decode steps per device call; shape_slack: a call may run on an already
    compiled shape costing at most this factor more than its exact bucket (`shapes`)."""

    num_slots: int = 64
    max_len: int = 4096
    max_prefill_len: int = 2048
    steps_per_sync: int = 8
    shape_slack: float = 4.0

    def __post_init__(self):
        for name in ("num_slots", "max_prefill_len", "steps_per_sync"):
            if getattr(self, name) < 1:
                raise ValueError(f"SamplerConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.max_len < 2:
            raise ValueError(
                f"SamplerConfig.max_len must be >= 2 (a prompt token and a new "
                f"token), got {self.max_len}"
            )
        if self.shape_slack < 1:
            raise ValueError(f"SamplerConfig.shape_slack must be >= 1, got {self.shape_slack}")

    def engine(self, model, mesh=None, **kwargs) -> Engine:
        """An `Engine` of this size on `model` (placed on `mesh`)."""
        return Engine(
            model,
            self.num_slots,
            self.max_len,
            mesh,
            steps_per_sync=self.steps_per_sync,
            max_prefill_len=min(self.max_len, self.max_prefill_len),
            shape_slack=self.shape_slack,
            **kwargs,
        )
