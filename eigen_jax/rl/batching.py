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
"""
from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from eigen_jax.rl.episode import Episode
from eigen_jax.train.logprobs import bucket, score_index  # noqa: F401  (re-exported)

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
        return [_Seq(episode.tokens[:end], episode.policy_mask[:end],
                     episode.sampler_logprobs[:end], advantage)]
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


def make_train_batch(episodes: Sequence[Episode], advantages: Sequence[float],
                     layout: str = "trajectory", *, pack: bool = True, min_len: int = 64,
                     max_len: int | None = None, row_multiple: int = 1,
                     min_rows: int = 1) -> dict[str, np.ndarray]:
    """Build the `[rows, length]` batch; `advantages[i]` is episode i's trajectory advantage,
    broadcast to each of its policy tokens.

    max_len: longest allowed sequence (a longer one is an error naming the episode — truncating
        would train on a context the policy never saw). Rows are `bucket(longest, min_len)` long.
    row_multiple: the row count is padded to a multiple of it (the data-parallel degree); padding
        rows have every mask 0.
    """
    _check_layout(layout)
    if len(advantages) != len(episodes):
        raise ValueError(f"{len(advantages)} advantages for {len(episodes)} episodes")
    seqs = []
    for ep, adv in zip(episodes, advantages):
        for s in episode_sequences(ep, layout, float(adv)):
            if max_len is not None and len(s.tokens) > max_len:
                raise ValueError(f"episode {ep.task_id}/{ep.sample_index}: a {layout} sequence of "
                                 f"{len(s.tokens)} tokens exceeds max_len={max_len}")
            seqs.append(s)
    if not seqs:
        raise ValueError("no episode has policy tokens; nothing to train on")
    row_len = bucket(max(len(s.tokens) for s in seqs), min_len)
    rows = _pack([len(s.tokens) for s in seqs], row_len) if pack else [[i] for i in
                                                                        range(len(seqs))]
    num_rows = bucket(max(len(rows), min_rows), 1)
    num_rows = -(-num_rows // row_multiple) * row_multiple
    batch = {"tokens": np.zeros((num_rows, row_len), np.int32),
             "positions": np.zeros((num_rows, row_len), np.int32),
             "segment_ids": np.zeros((num_rows, row_len), np.int32),
             "loss_mask": np.zeros((num_rows, row_len), np.int32),
             "advantages": np.zeros((num_rows, row_len), np.float32),
             "behaviour_logprobs": np.zeros((num_rows, row_len), np.float32)}
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


def pad_batch(batch: dict[str, np.ndarray], rows: int, length: int,
              scored: int) -> dict[str, np.ndarray]:
    """`batch` grown to `[rows, length]` (`score_index` to `[rows, scored]`) with all-zero rows
    and columns: zero loss mask and segment id, so they change neither the loss nor its token
    count. Lets the learner run on an already compiled, slightly larger shape."""
    r0, l0 = batch["tokens"].shape
    k0 = batch["score_index"].shape[1]
    if rows < r0 or length < l0 or scored < k0:
        raise ValueError(f"pad_batch cannot shrink [{r0}, {l0}] (scored {k0}) to [{rows}, "
                         f"{length}] (scored {scored})")
    out = {k: np.pad(v, ((0, rows - r0), (0, length - l0))) for k, v in batch.items()
           if k != "score_index"}
    out["score_index"] = np.pad(batch["score_index"], ((0, rows - r0), (0, scored - k0)))
    return out
