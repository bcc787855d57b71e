"""Episodes → GRPO train batch, in one of two layouts, packed into few fixed-shape rows.

Layouts (what one training *sequence* is):
  * `trajectory` (default): the whole episode is one sequence; every policy turn is trained in one
    forward pass, conditioned on exactly the context it was sampled with.
  * `per_turn` (the authors' layout): each policy turn is its own sequence — the conversation up
    to the end of that turn, with everything but that turn's generated ids masked. A dialogue of n
    turns then costs ~n/2 times the tokens of the trajectory layout; it exists for parity with the
    paper and for policies whose later prompts drop earlier content (e.g. stripped reasoning).
With the same context, both give the same per-token log-probs, hence the same loss and gradient.

Sequences are packed first-fit-decreasing into rows (segment ids, positions restarting at 0 per
segment) whose length and count are bucketed (powers of two), so the jitted train step sees few
distinct shapes. The batch contract: `tokens`, `positions`, `segment_ids`, `loss_mask`,
`advantages`, `behaviour_logprobs`, all `[rows, length]`; per-token values sit at the index of
the token they score (the learner shifts by one).

Shared prefixes (`share_prefix=True`): the G episodes of a GRPO group open with the same prompt
(system prompt, tool schemas, task), often the longest part of an agent episode. Processing it
once per group instead of G times is exact: causal attention makes the prompt's keys and values
independent of what follows, and the gradient through them is the sum over the G rows either
way. The batch then carries a prefix table (`prefix_tokens` `[P, Lp]`, `prefix_lengths`
`[P, 1]`) and one unpacked row per sequence holding only its suffix (`prefix_row` `[rows, 1]`
names its prefix; `positions` continue from the prefix length). A prefix never contains a scored
token, and the learner runs the model on `tokens[:, :-1]` (the last token's next-token
prediction is never scored), so rows are `bucket(longest suffix - 1) + 1` wide.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from eigen_jax.padding import bucket
from eigen_jax.rl.episode import Episode
from eigen_jax.train.logprobs import score_index  # noqa: F401  (re-exported)

LAYOUTS = ("trajectory", "per_turn")


@dataclasses.dataclass(frozen=True)
class _Seq:
    tokens: np.ndarray
    mask: np.ndarray
    behaviour: np.ndarray
    advantage: float


def _check_layout(layout: str) -> None:
    if layout not in LAYOUTS:
        raise ValueError(f"unknown batch layout {layout!r}; expected one of {LAYOUTS}")


def episode_sequences(episode: Episode, layout: str, advantage: float = 0.0) -> list[_Seq]:
    """The training sequences of one episode in `layout` (none if it has no policy tokens)."""
    _check_layout(layout)
    if layout == "trajectory":
        if not episode.policy_turns:
            return []
        end = episode.policy_turns[-1][1]  # nothing after the last policy token is scored
        return [
            _Seq(
                episode.tokens[:end],
                episode.policy_mask[:end],
                episode.sampler_logprobs[:end],
                advantage,
            )
        ]
    out = []
    for start, end in episode.policy_turns:
        mask = np.zeros(end, bool)
        mask[start:end] = True
        out.append(_Seq(episode.tokens[:end], mask, episode.sampler_logprobs[:end], advantage))
    return out


def layout_token_count(episodes: Sequence[Episode], layout: str) -> int:
    """Tokens the learner processes for `episodes` in `layout` (before packing padding)."""
    return sum(len(s.tokens) for e in episodes for s in episode_sequences(e, layout))


def _pack(lengths: Sequence[int], row_len: int) -> list[list[int]]:
    """First-fit-decreasing: sequence indices per row, each row's total <= row_len."""
    rows: list[list[int]] = []
    free: list[int] = []
    for i in sorted(range(len(lengths)), key=lambda k: -lengths[k]):
        for r, room in enumerate(free):
            if lengths[i] <= room:
                rows[r].append(i)
                free[r] -= lengths[i]
                break
        else:
            rows.append([i])
            free.append(row_len - lengths[i])
    return rows


def make_train_batch(
    episodes: Sequence[Episode],
    advantages: Sequence[float],
    layout: str = "trajectory",
    *,
    pack: bool = True,
    min_len: int = 64,
    max_len: int | None = None,
    row_multiple: int = 1,
    min_rows: int = 1,
    share_prefix: bool = False,
) -> dict[str, np.ndarray]:
    """Build the `[rows, length]` batch; `advantages[i]` is episode i's trajectory advantage,
    broadcast to each of its policy tokens.

    max_len: longest allowed sequence (a longer one is an error naming the episode — truncating
        would train on a context the policy never saw). Rows are `bucket(longest, min_len)` long.
    row_multiple: the row count is padded to a multiple of it (the data-parallel degree); padding
        rows have every mask 0.
    share_prefix: one prefix per group (episodes of equal `task_id` and `group_id`), suffix rows
        (see the module docstring); `pack` is then ignored (a row holds one suffix).
    """
    _check_layout(layout)
    if len(advantages) != len(episodes):
        raise ValueError(f"{len(advantages)} advantages for {len(episodes)} episodes")
    seqs, groups = [], []
    for ep, adv in zip(episodes, advantages):
        for s in episode_sequences(ep, layout, float(adv)):
            if max_len is not None and len(s.tokens) > max_len:
                raise ValueError(
                    f"episode {ep.task_id}/{ep.sample_index}: a {layout} sequence of "
                    f"{len(s.tokens)} tokens exceeds max_len={max_len}"
                )
            seqs.append(s)
            groups.append((ep.task_id, ep.group_id))
    if not seqs:
        raise ValueError("no episode has policy tokens; nothing to train on")
    if share_prefix:
        return _shared_prefix_batch(seqs, groups, row_multiple, min_rows)
    row_len = bucket(max(len(s.tokens) for s in seqs), min_len)
    rows = (
        _pack([len(s.tokens) for s in seqs], row_len) if pack else [[i] for i in range(len(seqs))]
    )
    num_rows = bucket(max(len(rows), min_rows), 1)
    num_rows = -(-num_rows // row_multiple) * row_multiple
    batch = {
        "tokens": np.zeros((num_rows, row_len), np.int32),
        "positions": np.zeros((num_rows, row_len), np.int32),
        "segment_ids": np.zeros((num_rows, row_len), np.int32),
        "loss_mask": np.zeros((num_rows, row_len), np.int32),
        "advantages": np.zeros((num_rows, row_len), np.float32),
        "behaviour_logprobs": np.zeros((num_rows, row_len), np.float32),
    }
    for r, members in enumerate(rows):
        at = 0
        for seg, i in enumerate(members, start=1):
            s, n = seqs[i], len(seqs[i].tokens)
            span = slice(at, at + n)
            batch["tokens"][r, span] = s.tokens
            batch["positions"][r, span] = np.arange(n)
            batch["segment_ids"][r, span] = seg
            batch["loss_mask"][r, span] = s.mask
            batch["advantages"][r, span] = s.advantage * s.mask
            batch["behaviour_logprobs"][r, span] = np.where(s.mask, s.behaviour, 0.0)
            at += n
    batch["score_index"] = score_index(batch["loss_mask"])
    return batch


def model_cost(batch: dict[str, np.ndarray], token_cost: float) -> float:
    """The learner's trunk cost for `batch`, up to a constant (the unit of `sampling.shapes`: one
    attended key). Every position the model runs pays `token_cost` (its weight matmuls, see
    `shapes.token_cost_of`) plus the keys it attends: about half its row in the packed layouts
    (causal blocks), the whole cache in the shared-prefix one (its rows attend through the
    cache path). The vocabulary projection is the same in both and left out."""
    rows, length = batch["tokens"].shape
    if "prefix_tokens" not in batch:
        return rows * length * (token_cost + length / 2)
    prefixes, prefix_len = batch["prefix_tokens"].shape
    slots = prefix_len + length - 1
    return (prefixes * prefix_len + rows * (length - 1)) * (token_cost + slots)


def cheapest_train_batch(
    episodes: Sequence[Episode],
    advantages: Sequence[float],
    layout: str,
    token_cost: float,
    **kwargs,
) -> dict[str, np.ndarray]:
    """`make_train_batch` packed or with shared prefixes, whichever `model_cost` rates cheaper:
    sharing wins when groups open with long prompts and end soon after (the GRPO benchmark:
    0.38 vs 0.53 s per update at bench-25m); packing wins for long multi-turn episodes, where
    unpacked suffix rows pad more and attend densely."""
    plain = make_train_batch(episodes, advantages, layout, **kwargs)
    shared = make_train_batch(episodes, advantages, layout, share_prefix=True, **kwargs)
    return shared if model_cost(shared, token_cost) < model_cost(plain, token_cost) else plain


def _common_prefix_len(arrays: Sequence[np.ndarray]) -> int:
    n = min(len(a) for a in arrays)
    first = arrays[0][:n]
    differs = np.zeros(n, bool)
    for a in arrays[1:]:
        differs |= a[:n] != first
    return int(np.argmax(differs)) if differs.any() else n


def _shared_prefix_batch(
    seqs: list[_Seq], groups: list, row_multiple: int, min_rows: int, min_len: int = 16
) -> dict[str, np.ndarray]:
    """The shared-prefix layout (module docstring): per group, the prefix is its sequences'
    common prefix cut before the token preceding the group's first scored token."""
    members: dict = {}
    for i, key in enumerate(groups):
        members.setdefault(key, []).append(i)
    cut = [0] * len(seqs)
    prefixes = []
    for index in members.values():
        first_scored = min(int(np.argmax(seqs[i].mask)) for i in index)
        c = max(min(_common_prefix_len([seqs[i].tokens for i in index]), first_scored) - 1, 0)
        for i in index:
            cut[i] = c
        prefixes.append((seqs[index[0]].tokens[:c], index))
    width = bucket(max(len(s.tokens) - c for s, c in zip(seqs, cut)) - 1, min_len) + 1
    num_rows = -(-bucket(max(len(seqs), min_rows), 1) // row_multiple) * row_multiple
    num_prefixes = -(-len(prefixes) // row_multiple) * row_multiple
    batch = {
        "tokens": np.zeros((num_rows, width), np.int32),
        "positions": np.zeros((num_rows, width), np.int32),
        "segment_ids": np.zeros((num_rows, width), np.int32),
        "loss_mask": np.zeros((num_rows, width), np.int32),
        "advantages": np.zeros((num_rows, width), np.float32),
        "behaviour_logprobs": np.zeros((num_rows, width), np.float32),
        "prefix_row": np.zeros((num_rows, 1), np.int32),
        "prefix_tokens": np.zeros(
            (num_prefixes, bucket(max(len(p) for p, _ in prefixes), min_len)), np.int32
        ),
        "prefix_lengths": np.zeros((num_prefixes, 1), np.int32),
    }
    for p, (prefix, index) in enumerate(prefixes):
        batch["prefix_tokens"][p, : len(prefix)] = prefix
        batch["prefix_lengths"][p] = len(prefix)
        for i in index:
            s, c = seqs[i], cut[i]
            span = slice(0, len(s.tokens) - c)
            batch["tokens"][i, span] = s.tokens[c:]
            batch["positions"][i, span] = np.arange(c, len(s.tokens))
            batch["segment_ids"][i, span] = 1
            batch["loss_mask"][i, span] = s.mask[c:]
            batch["advantages"][i, span] = s.advantage * s.mask[c:]
            batch["behaviour_logprobs"][i, span] = np.where(s.mask[c:], s.behaviour[c:], 0.0)
            batch["prefix_row"][i] = p
    batch["score_index"] = score_index(batch["loss_mask"])
    return batch


def pad_batch(
    batch: dict[str, np.ndarray],
    rows: int,
    length: int,
    scored: int,
    prefixes: int | None = None,
    prefix_len: int | None = None,
) -> dict[str, np.ndarray]:
    """`batch` grown to `[rows, length]` (`score_index` to `[rows, scored]`, a shared-prefix
    table to `[prefixes, prefix_len]`) with all-zero rows and columns: zero loss mask and segment
    id (and zero-length prefixes), so they change neither the loss nor its token count. Lets the
    learner run on an already compiled, slightly larger shape."""
    r0, l0 = batch["tokens"].shape
    k0 = batch["score_index"].shape[1]
    p0, q0 = batch["prefix_tokens"].shape if "prefix_tokens" in batch else (0, 0)
    prefixes = p0 if prefixes is None else prefixes
    prefix_len = q0 if prefix_len is None else prefix_len
    if rows < r0 or length < l0 or scored < k0 or prefixes < p0 or prefix_len < q0:
        raise ValueError(
            f"pad_batch cannot shrink [{r0}, {l0}] (scored {k0}, prefixes "
            f"[{p0}, {q0}]) to [{rows}, {length}] (scored {scored}, prefixes "
            f"[{prefixes}, {prefix_len}])"
        )
    widths = {"score_index": scored - k0, "prefix_row": 0}
    out = {
        k: np.pad(v, ((0, rows - r0), (0, widths.get(k, length - l0))))
        for k, v in batch.items()
        if not k.startswith("prefix_") or k == "prefix_row"
    }
    if "prefix_tokens" in batch:
        out["prefix_tokens"] = np.pad(
            batch["prefix_tokens"], ((0, prefixes - p0), (0, prefix_len - q0))
        )
        out["prefix_lengths"] = np.pad(batch["prefix_lengths"], ((0, prefixes - p0), (0, 0)))
    return out


def batch_shape(batch: dict[str, np.ndarray]) -> tuple[int, ...]:
    """(rows, length, scored[, prefixes, prefix_len]): `pad_batch`'s arguments for this batch."""
    shape = (*batch["tokens"].shape, batch["score_index"].shape[1])
    return shape + tuple(batch["prefix_tokens"].shape) if "prefix_tokens" in batch else shape
