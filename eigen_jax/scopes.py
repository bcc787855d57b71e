"""The gin scopes in which each consumer reads the configs it shares with others.

`SamplerConfig` and `RolloutConfig` are declared once, unscoped; a consumer that needs a different
value binds it in its own scope only (`user/SamplerConfig.num_slots = 8`,
`grpo/RolloutConfig.max_errors = 4`) and inherits everything else.
"""

from __future__ import annotations

from typing import TypeVar

import gin

GRPO = "grpo"  # GRPO's policy sampler and rollouts
EVAL = "eval"  # in-process evaluation's sampler and rollouts
USER = "user"  # the in-process user simulator's sampler

T = TypeVar("T")


def configured(cls: type[T], scope: str) -> T:
    """`cls()` with the gin bindings of `scope` (falling back to the unscoped ones)."""
    with gin.config_scope(scope):
        return cls()
