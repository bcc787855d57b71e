"""The GRPO algorithm's knobs as one typed, gin-bound config (the paper's defaults).

Sampler sizes live in `sampling.config.SamplerConfig` and episode limits in
`rl.rollout.RolloutConfig`; this holds only what decides the update.
"""

from __future__ import annotations

import dataclasses

import gin

from eigen_jax.rl import advantages, losses
from eigen_jax.rl.train_batch import LAYOUTS


@gin.configurable
@dataclasses.dataclass(frozen=True)
class GRPOConfig:
    """tasks_per_step: informative groups per update (B); group_size: episodes per task (G);
    dynamic_filtering: drop groups whose rewards are all equal and roll out more tasks, at most
    `max_extra_rounds` extra rounds per step; advantage / loss: registered names
    (`rl.advantages`, `rl.losses`); eps_low / eps_high: the surrogate's clip range; is_cap:
    tokens whose behaviour-policy importance weight exceeds it are masked (None: off); kl_coef:
    weight of the k3 KL to the initial policy (0: no reference copy is kept); ppo_epochs:
    optimiser passes per rollout batch (μ); layout: `trajectory` or `per_turn` train rows;
    router_aux_loss_coef: an MoE policy's load-balancing loss weight (HF's definition);
    share_prefix: the learner may run each group's common prompt once (exact; one process and
    no gradient accumulation only); log_entropy: log the policy's token entropy."""

    tasks_per_step: int = 8
    group_size: int = 8
    dynamic_filtering: bool = True
    max_extra_rounds: int = 4
    advantage: str = "grpo"
    loss: str = "grpo"
    eps_low: float = 0.4
    eps_high: float = 0.4
    is_cap: float | None = 5.0
    kl_coef: float = 0.0
    ppo_epochs: int = 1
    learning_rate: float = 1e-5
    layout: str = "trajectory"
    router_aux_loss_coef: float = 0.0
    share_prefix: bool = True
    log_entropy: bool = True

    def __post_init__(self):
        def fail(what: str):
            raise ValueError(f"GRPOConfig.{what}")

        if self.tasks_per_step < 1:
            fail(f"tasks_per_step must be >= 1, got {self.tasks_per_step}")
        if self.group_size < 2:  # a group baseline needs two samples
            fail(f"group_size must be >= 2, got {self.group_size}")
        if self.ppo_epochs < 1:
            fail(f"ppo_epochs must be >= 1, got {self.ppo_epochs}")
        if self.max_extra_rounds < 0:
            fail(f"max_extra_rounds must be >= 0, got {self.max_extra_rounds}")
        for name in ("eps_low", "eps_high", "kl_coef", "router_aux_loss_coef"):
            if getattr(self, name) < 0:
                fail(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.is_cap is not None and self.is_cap <= 0:
            fail(f"is_cap must be > 0 or None, got {self.is_cap}")
        if not self.learning_rate > 0:
            fail(f"learning_rate must be > 0, got {self.learning_rate}")
        if self.layout not in LAYOUTS:
            fail(f"layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.advantage not in advantages.names():
            fail(f"advantage must be one of {advantages.names()}, got {self.advantage!r}")
        if self.loss not in losses.names():
            fail(f"loss must be one of {losses.names()}, got {self.loss!r}")
