"""`SamplingParams`: how one request is decoded (the knobs a caller sets per sequence).

Every field is per request, so one batch can mix greedy evaluation rollouts with sampled RL
rollouts; the device kernels receive them as per-row arrays. Defaults follow the conventions of
Hugging Face / vLLM: `temperature=1`, no top-k (`0`), no top-p (`1.0`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence


@dataclasses.dataclass(frozen=True)
class SamplingParams:
    """Decoding settings of one request.

    temperature: 0 selects greedy decoding (argmax); > 0 divides the logits before top-k/top-p.
    top_k: keep the k highest logits (0 = off).
    top_p: keep the smallest set of tokens whose probability mass reaches top_p (1.0 = off).
    max_new_tokens: upper bound on tokens generated in this turn (finish reason "length").
    stop_token_ids: sampling one of these ends the turn (finish reason "stop"); the stop token is
        kept in the output because the policy produced it and RL needs its log-probability.
    stop_strings: the turn ends once the decoded text of this turn contains one of them; needs a
        `decode_fn`. Output keeps the tokens up to and including the one completing the string.
    """

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    max_new_tokens: int = 256
    stop_token_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()

    def __post_init__(self):
        # Normalise list inputs so instances stay hashable and comparable.
        object.__setattr__(self, "stop_token_ids", _as_int_tuple(self.stop_token_ids))
        object.__setattr__(self, "stop_strings", _as_str_tuple(self.stop_strings))
        if not (self.temperature >= 0.0):  # also rejects NaN
            raise ValueError(f"temperature must be >= 0 (0 = greedy), got {self.temperature}")
        if int(self.top_k) != self.top_k or self.top_k < 0:
            raise ValueError(f"top_k must be a non-negative integer (0 = off), got {self.top_k}")
        if not (0.0 < self.top_p <= 1.0):
            raise ValueError(f"top_p must be in (0, 1] (1 = off), got {self.top_p}")
        if int(self.max_new_tokens) != self.max_new_tokens or self.max_new_tokens < 1:
            raise ValueError(
                f"max_new_tokens must be a positive integer, got {self.max_new_tokens}"
            )
        if any(t < 0 for t in self.stop_token_ids):
            raise ValueError(f"stop_token_ids must be non-negative, got {self.stop_token_ids}")
        if any(s == "" for s in self.stop_strings):
            raise ValueError("stop_strings must not contain the empty string")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0.0

    def replace(self, **changes) -> SamplingParams:
        return dataclasses.replace(self, **changes)


def _as_int_tuple(values: Sequence[int] | int | None) -> tuple[int, ...]:
    if values is None:
        return ()
    if isinstance(values, int):
        return (int(values),)
    out = []
    for v in values:
        if isinstance(v, bool) or int(v) != v:
            raise TypeError(f"stop_token_ids must be integers, got {v!r}")
        out.append(int(v))
    return tuple(out)


def _as_str_tuple(values: Sequence[str] | str | None) -> tuple[str, ...]:
    if values is None:
        return ()
    if isinstance(values, str):
        return (values,)
    for v in values:
        if not isinstance(v, str):
            raise TypeError(f"stop_strings must be strings, got {v!r}")
    return tuple(values)
