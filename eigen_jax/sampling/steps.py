"""The jitted device programs of the sampler: batched prefill and multi-step decode on a KV cache.

Both take the model as `(graphdef, params)` (`nnx.split`) so the weights are jit arguments, not
baked-in constants, and both donate the cache so XLA updates it in place. Per-row decoding state
lives in a small `SlotState` of `[num_slots]` arrays that the host owns and ships once per call:
one host->device and one device->host transfer per `decode_steps` call, however many tokens it
decodes.

Cache bookkeeping (`eigen_jax.models` contract): a token at position p is written to slot p and
attends slots <= p of its row. `SlotState.position[r]` is the position of `last_token[r]`, the
sampled token not yet written to the cache; feeding it writes slot `position` and samples the
token at `position + 1`. Inactive rows and padding are given position `max_len`, so their cache
writes fall outside the cache and are dropped.

Live-length attention (`kv_len`): both programs can run the model on the first `kv_len` slots of
every row instead of all `max_len`, so a step costs what the live context costs, not what the
longest possible one would (RL rollouts size caches for the longest episode, while most rows
are much shorter). The model reads each layer's live slots of the rows it runs as it goes and
scatters new keys into the donated full cache in place (`models.attention.read_cache`; on a
TPU the decode kernel, `models.decode_attention`, writes them itself), so on an accelerator no
call copies the cache, whatever its size (a CPU decode call splits it per layer once, see
`decode_steps`). Slots >= kv_len are neither read nor written, so the
caller must choose `kv_len` above every slot a row writes in the call (see `decode_kv_len` /
`prefill_kv_len`); masked slots contribute exact zeros to attention, so the result equals the
full-cache one up to float summation order. `kv_len` is static: each distinct value is one
compilation, hence the power-of-two buckets.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from eigen_jax.models.attention import CACHE_ROW_AXIS as ROW
from eigen_jax.models.attention import CACHE_SLOT_AXIS as SLOT
from eigen_jax.padding import bucket
from eigen_jax.sampling.sample import row_keys, sample_tokens

FINISH_NONE, FINISH_STOP, FINISH_LENGTH = 0, 1, 2
FINISH_REASONS = {FINISH_STOP: "stop", FINISH_LENGTH: "length"}


class SlotState(NamedTuple):
    """Per-slot decoding state, all `[num_slots]` except `stop_ids` `[num_slots, K]` (-1 pads)."""

    last_token: np.ndarray | jax.Array  # int32: sampled, not yet in the cache
    position: np.ndarray | jax.Array  # int32: position of last_token (= tokens in cache)
    active: np.ndarray | jax.Array  # bool: still decoding
    num_generated: np.ndarray | jax.Array  # int32: tokens sampled in the current turn
    max_new: np.ndarray | jax.Array  # int32
    finish: np.ndarray | jax.Array  # int32: FINISH_* code of the last finished turn
    temperature: np.ndarray | jax.Array  # float32
    top_k: np.ndarray | jax.Array  # int32
    top_p: np.ndarray | jax.Array  # float32
    seed: np.ndarray | jax.Array  # uint32
    stop_ids: np.ndarray | jax.Array  # int32 [num_slots, K]

    @classmethod
    def empty(cls, num_slots: int, num_stop_ids: int) -> SlotState:
        z = lambda dt: np.zeros((num_slots,), dt)
        return cls(
            z(np.int32),
            z(np.int32),
            z(np.bool_),
            z(np.int32),
            z(np.int32),
            z(np.int32),
            z(np.float32),
            z(np.int32),
            np.ones((num_slots,), np.float32),
            z(np.uint32),
            np.full((num_slots, num_stop_ids), -1, np.int32),
        )


def finish_check(token, num_generated, position, stop_ids, max_new, max_len: int, xp=jnp):
    """(done, FINISH_* code) for rows that just sampled `token` at `position`.

    Shared by the device loop (xp=jnp) and the host after prefill (xp=np) so both apply the same
    rule: a stop id ends the turn; otherwise it ends at `max_new` tokens or when the next write
    would not fit in the cache (the sampled token itself needs slot `position` < max_len).
    """
    is_stop = xp.any(token[:, None] == stop_ids, axis=-1)
    out_of_budget = num_generated >= max_new
    out_of_room = position >= max_len - 1
    done = is_stop | out_of_budget | out_of_room
    return done, xp.where(is_stop, FINISH_STOP, FINISH_LENGTH).astype(xp.int32)


def _live_len(cache, kv_len: int | None) -> int:
    """The static slot count a call runs on: kv_len capped at max_len (None: max_len)."""
    max_len = cache["k"].shape[SLOT]
    if kv_len is None:
        return max_len
    if kv_len < 1:
        raise ValueError(f"kv_len must be positive, got {kv_len}")
    return min(int(kv_len), max_len)


def decode_kv_len(
    position, active, num_generated, max_new, num_steps: int, max_len: int, minimum: int
) -> int:
    """Cache slots a `decode_steps` call of `num_steps` needs, bucketed: an active row at
    `position` writes slots position .. position + n - 1, n = min(num_steps, tokens left in its
    budget). `max_len` when no row is active (the call then runs no step)."""
    if not np.any(active):
        return max_len
    left = np.maximum(np.minimum(num_steps, max_new - num_generated), 1)
    return bucket(int(np.max(np.where(active, position + left, 0))), minimum, max_len)


def prefill_kv_len(positions, max_len: int, minimum: int) -> int:
    """Cache slots a `prefill` call needs, bucketed: one past its largest real position
    (padding carries `max_len` and is ignored)."""
    real = positions[positions < max_len]
    return max_len if real.size == 0 else bucket(int(real.max()) + 1, minimum, max_len)


@functools.partial(jax.jit, static_argnames=("graphdef", "kv_len"), donate_argnames=("cache",))
def prefill(
    graphdef,
    params,
    cache,
    rows,
    tokens,
    positions,
    last_index,
    seeds,
    temperature,
    top_k,
    top_p,
    kv_len: int | None = None,
):
    """Write `tokens` [R, T] of cache rows `rows` [R] and sample one token after each row's
    `last_index` token.

    `positions` [R, T] are absolute (a row's chunk starts at its current length, so the cached
    prefix is reused); padding tokens carry position max_len and padding rows carry row index
    num_slots, so neither writes anything. Returns (cache, tokens [R], logprobs [R]).

    kv_len (static): run on cache slots [0, kv_len) only (default: all); every real position must
    be < kv_len, or its write is dropped (see `prefill_kv_len`).
    """
    model = nnx.merge(graphdef, params)
    hidden, cache = model(
        tokens,
        positions=positions,
        cache=cache,
        return_hidden=True,
        cache_rows=rows,
        kv_len=_live_len(cache, kv_len),
    )
    last_hidden = jnp.take_along_axis(hidden, last_index[:, None, None], axis=1)[:, 0]
    logits = model.project(last_hidden)
    sample_pos = jnp.take_along_axis(positions, last_index[:, None], axis=1)[:, 0] + 1
    new_tokens, logprobs = sample_tokens(
        logits, row_keys(seeds, sample_pos), temperature, top_k, top_p
    )
    return cache, new_tokens, logprobs


@functools.partial(jax.jit, static_argnames=("graphdef",))
def split_layer_params(graphdef, params) -> list:
    """`Transformer.split_layers` of the sampler's weights (for `decode_steps`' CPU path)."""
    return nnx.merge(graphdef, params).split_layers()


@functools.partial(
    jax.jit, static_argnames=("graphdef", "num_steps", "kv_len"), donate_argnames=("cache",)
)
def decode_steps(
    graphdef,
    params,
    cache,
    state: SlotState,
    num_steps: int,
    kv_len: int | None = None,
    layer_params: list | None = None,
):
    """Up to `num_steps` decode steps over every slot (stops early once no slot is active).

    kv_len (static): attend and write cache slots [0, kv_len) only (default: all). The loop also
    stops before any active row would write slot >= kv_len, so a too-small kv_len costs an early
    return (the caller's next call continues), never a lost write; `decode_kv_len` picks one
    that fits the whole call. The out-of-room rule still uses the real `max_len`.

    layer_params (`split_layer_params`, a CPU engine's): the loop runs over per-layer weights
    and cache planes (the cache split once per call) instead of slicing the stacks every step.

    Returns (cache, state, tokens [S, num_steps], logprobs [S, num_steps]); tokens are -1 where a
    row emitted nothing (inactive, or finished earlier in this call).
    """
    model = nnx.merge(graphdef, params)
    num_slots, max_len = state.position.shape[0], cache["k"].shape[SLOT]
    kv_len = _live_len(cache, kv_len)
    if layer_params is not None:
        cache = model.split_cache(cache)
    state = SlotState(*(jnp.asarray(x) for x in state))
    out_tokens = jnp.full((num_slots, num_steps), -1, jnp.int32)
    out_logprobs = jnp.zeros((num_slots, num_steps), jnp.float32)

    def cond(carry):
        step, st = carry[0], carry[1]
        go = (step < num_steps) & jnp.any(st.active)
        if kv_len < max_len:  # a full cache always fits: out-of-room rows are inactive
            go &= jnp.all(~st.active | (st.position < kv_len))
        return go

    def body(carry):
        step, st, cache, out_tokens, out_logprobs = carry
        write_pos = jnp.where(st.active, st.position, max_len)
        logits, cache = model(
            st.last_token[:, None],
            positions=write_pos[:, None],
            cache=cache,
            kv_len=kv_len,
            layer_params=layer_params,
        )
        keys = row_keys(st.seed, st.position + 1)
        token, logprob = sample_tokens(logits[:, 0], keys, st.temperature, st.top_k, st.top_p)
        emit = st.active
        position = st.position + emit.astype(jnp.int32)
        num_generated = st.num_generated + emit.astype(jnp.int32)
        done, code = finish_check(token, num_generated, position, st.stop_ids, st.max_new, max_len)
        st = st._replace(
            last_token=jnp.where(emit, token, st.last_token),
            position=position,
            num_generated=num_generated,
            active=emit & ~done,
            finish=jnp.where(emit & done, code, st.finish),
        )
        out_tokens = out_tokens.at[:, step].set(jnp.where(emit, token, -1))
        out_logprobs = out_logprobs.at[:, step].set(jnp.where(emit, logprob, 0.0))
        return step + 1, st, cache, out_tokens, out_logprobs

    _, state, cache, out_tokens, out_logprobs = jax.lax.while_loop(
        cond, body, (jnp.int32(0), state, cache, out_tokens, out_logprobs)
    )
    if layer_params is not None:
        cache = model.join_cache(cache)
    return cache, state, out_tokens, out_logprobs


@functools.partial(jax.jit, donate_argnames=("cache",))
def copy_rows(cache, src, dst):
    """Cache rows `src` [N] copied onto rows `dst` [N] (a `dst` of num_slots is padding and
    writes nothing). Lets sessions that open with the same prompt prefill it once: the program
    has no model in it, so it compiles in a moment for each bucketed N."""
    return jax.tree.map(
        lambda x: x.at[:, dst].set(jnp.take(x, src, axis=ROW, mode="clip"), mode="drop"), cache
    )
