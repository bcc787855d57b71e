"""Padded shapes for the sampler's device calls, preferring shapes that are already compiled.

Why: every distinct (rows, length, kv_len) of a prefill call and every kv_len of a decode call is
one XLA compilation. Power-of-two buckets alone still give up to 6 x 7 x 4 prefill shapes for a
24-slot, 1024-token engine, and multi-turn rollouts meet most of them; compiling one costs far
more than running one (bench/NOTES.md, "Where the quickstart's GRPO and evaluation time went").
A slightly larger shape that is already compiled is much cheaper than a new one, so a call takes the
cheapest compiled shape that covers it when its estimated cost is within `slack` times the exact
bucket's; otherwise it compiles the exact bucket, which later calls can then reuse.

Cost model (FLOPs up to a constant): rows x length x (kv_len + token_cost), with `token_cost` a
token's weight matmuls expressed in attended cache slots (`token_cost_of`), so a bigger kv_len
weighs as much as it really costs. Which shapes exist is recorded per program signature (the
model's graph and the cache's shapes), shared by every engine in the process, as jit's own cache
is: an evaluation that builds one engine per checkpoint reuses the previous engines' programs.

Padding never changes what a real row computes (padding rows write nowhere, padding tokens carry
position max_len, slots beyond the live length are masked); results match the exact bucket up to
float summation order.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Hashable

# program signature -> call kind -> shapes already chosen (hence compiled) for it
_COMPILED: dict[Hashable, dict[Hashable, set[tuple[int, ...]]]] = collections.defaultdict(
    lambda: collections.defaultdict(set)
)


def token_cost_of(config) -> float:
    """A token's per-layer weight matmul FLOPs in units of one attended cache slot's FLOPs
    (an MoE layer counts the experts a token runs through, and its router)."""
    d, hd = config.hidden_size, config.head_dim
    mlp = (
        sum(
            d * (3 * config.moe_intermediate_size * config.num_experts_per_tok + config.num_experts)
            if sparse
            else 3 * d * config.intermediate_size
            for sparse in config.sparse_layers
        )
        / config.num_layers
    )
    weights = d * hd * (2 * config.num_heads + 2 * config.num_kv_heads) + mlp
    return weights / (2 * config.num_heads * hd)


class ShapePlanner:
    """Chooses the padded shape of each call. `slack=1` always takes the exact bucket."""

    def __init__(self, signature: Hashable, token_cost: float, slack: float = 4.0):
        if slack < 1:
            raise ValueError(f"shape slack must be >= 1 (1 = exact buckets only), got {slack}")
        self.slack, self.token_cost = float(slack), float(token_cost)
        self._seen = _COMPILED[signature]  # looked up once: signatures are costly to hash

    def cost(self, rows: int, length: int, kv_len: int) -> float:
        return rows * length * (kv_len + self.token_cost)

    def prefill(self, rows: int, length: int, kv_len: int, max_length: int) -> tuple[int, int, int]:
        """(rows, length, kv_len) covering the exact bucket given, no longer than max_length."""
        return self.cover(
            "prefill",
            (rows, length, kv_len),
            lambda s: self.cost(*s),
            bound=lambda s: s[1] <= max_length,
        )

    def decode(self, kv_len: int, num_slots: int, num_steps: int) -> int:
        """kv_len of a `num_steps` decode call over `num_slots` rows (both fixed per engine)."""
        return self.cover(
            ("decode", num_slots, num_steps), (kv_len,), lambda s: self.cost(num_slots, 1, s[0])
        )[0]

    def cover(
        self,
        kind: Hashable,
        exact: tuple[int, ...],
        cost: Callable[[tuple], float],
        bound: Callable[[tuple], bool] = lambda s: True,
    ) -> tuple[int, ...]:
        """The cheapest recorded shape of `kind` at least `exact` in every dimension (and within
        `bound`) costing at most `slack` x cost(exact); else `exact`. Records the choice."""
        seen = self._seen[kind]
        exact = tuple(int(d) for d in exact)
        budget = self.slack * cost(exact)
        reusable = [
            s
            for s in seen
            if all(a >= b for a, b in zip(s, exact)) and bound(s) and cost(s) <= budget
        ]
        chosen = min(reusable, key=cost) if reusable else exact
        seen.add(chosen)
        return chosen
