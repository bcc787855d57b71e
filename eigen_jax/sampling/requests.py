"""What callers hand the sampler and get back: `Request` (a single-turn job for `Engine.run` and
`generate`) and `Completion` (one finished turn). Kept apart from the engine so that servers and
learners can name them without the engine's internals."""

from __future__ import annotations

import dataclasses
from collections.abc import Hashable, Sequence

import numpy as np

from eigen_jax.sampling.params import SamplingParams


@dataclasses.dataclass
class Completion:
    """One finished turn: the sampled tokens, their sampling log-probabilities and why it ended.

    `stop` is the stop token id or stop string that ended the turn (None for "length");
    `context_length` is the number of context tokens the turn was conditioned on.
    """

    session_id: Hashable
    token_ids: np.ndarray
    logprobs: np.ndarray
    finish_reason: str
    stop: int | str | None
    context_length: int

    @property
    def num_tokens(self) -> int:
        return len(self.token_ids)


@dataclasses.dataclass(frozen=True)
class Request:
    """A single-turn request for `Engine.run` / `generate`."""

    session_id: Hashable
    token_ids: Sequence[int]
    params: SamplingParams = dataclasses.field(default_factory=SamplingParams)
    seed: int = 0


def check_token_ids(ids: Sequence[int], vocab_size: int) -> list[int]:
    """`ids` as a list of ints, or a clear error if they are not a flat sequence of integers in
    [0, vocab_size)."""
    arr = np.asarray(list(ids))
    if arr.size and (arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(
            f"token ids must be a flat sequence of integers, got dtype "
            f"{arr.dtype} shape {arr.shape}"
        )
    if arr.size and (arr.min() < 0 or arr.max() >= vocab_size):
        raise ValueError(
            f"token ids must lie in [0, {vocab_size}), got range [{arr.min()}, {arr.max()}]"
        )
    return [int(x) for x in arr]
