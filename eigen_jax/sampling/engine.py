"""Continuous-batching engine for multi-turn rollouts over a fixed set of KV-cache slots.

A *session* (one agent episode) owns one cache row ("slot") from its first turn until it is
released. Each turn the caller submits only the tokens appended since the last turn (tool result,
user message); they are prefilled at the row's current length, so the cached history is reused,
never recomputed. Slots of finished turns stay reserved for their session; sessions waiting for a
slot are admitted as soon as another session is released. Every `step()` prefills newly ready
turns in one bucketed batch, then decodes all running turns for up to `steps_per_sync` tokens on
device, then hands back the turns that finished.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
from collections.abc import Callable, Hashable, Sequence

import jax
import numpy as np
from flax import nnx

from eigen_jax.models.attention import CACHE_LOGICAL_AXES
from eigen_jax.padding import bucket
from eigen_jax.sampling import steps
from eigen_jax.sampling.params import SamplingParams
from eigen_jax.sampling.requests import Completion, Request, check_token_ids
from eigen_jax.sampling.shapes import ShapePlanner, token_cost_of
from eigen_jax.sharding import logical_to_sharding, state_shardings


@dataclasses.dataclass
class _Session:
    slot: int | None = None
    cache_len: int = 0  # tokens already written to the slot
    pending: list[int] = dataclasses.field(default_factory=list)  # context not yet in the cache
    status: str = "idle"  # idle | queued | decoding
    params: SamplingParams | None = None
    seed: int = 0
    turn_start: int = 0  # context length when the turn began
    turn_ids: list[int] = dataclasses.field(default_factory=list)
    turn_logprobs: list[float] = dataclasses.field(default_factory=list)


class Engine:
    """Continuous batching over `num_slots` cache rows of `max_len` tokens each.

    model: an `eigen_jax.models.Transformer`; with `mesh`, weights and cache are placed on it by
        their logical axes (batch on the batch axes, kv heads on tensor).
    decode_fn: ids -> text, needed only for requests with `stop_strings`.
    steps_per_sync: decode steps per device call (one host transfer each way per call).
    max_prefill_len: longest prefill chunk; longer contexts are prefilled in several chunks.
    min_kv_len: smallest cache length a device call attends. Each prefill/decode call runs on
        the first `kv_len` slots only, kv_len = the power of two >= every slot the call writes,
        at least `min_kv_len` and at most `max_len`, so short sessions in a long cache do not pay
        for `max_len` (each distinct kv_len is one more compiled program: about
        log2(max_len / min_kv_len) + 1 per shape). `min_kv_len >= max_len` always attends the
        whole cache.
    shape_slack: a call may run on an already compiled larger shape when that costs at most
        `shape_slack` times its exact bucket (`shapes.ShapePlanner`); 1 = exact buckets only.
    """

    def __init__(
        self,
        model: nnx.Module,
        num_slots: int,
        max_len: int,
        mesh=None,
        *,
        decode_fn: Callable[[Sequence[int]], str] | None = None,
        steps_per_sync: int = 8,
        max_prefill_len: int = 512,
        min_prefill_len: int = 16,
        max_stop_ids: int = 8,
        min_kv_len: int = 128,
        cache_dtype=None,
        shape_slack: float = 4.0,
    ):
        for name, value in (
            ("num_slots", num_slots),
            ("max_len", max_len),
            ("steps_per_sync", steps_per_sync),
            ("min_kv_len", min_kv_len),
            ("max_prefill_len", max_prefill_len),
            ("max_stop_ids", max_stop_ids),
        ):
            if int(value) != value or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if max_len < 2:
            raise ValueError(
                f"max_len must be >= 2 (a prompt token and a new token), got {max_len}"
            )
        self.num_slots, self.max_len, self.mesh = int(num_slots), int(max_len), mesh
        self.decode_fn, self.steps_per_sync = decode_fn, int(steps_per_sync)
        self.max_prefill_len = int(max_prefill_len)
        self.min_prefill_len = min(int(min_prefill_len), self.max_prefill_len)
        self.max_stop_ids = int(max_stop_ids)
        self.min_kv_len = int(min_kv_len)
        self.vocab_size = model.config.vocab_size
        self._graphdef, self._params = nnx.split(model)
        self.cache = model.init_cache(self.num_slots, self.max_len, cache_dtype)
        if mesh is not None:
            self._params = jax.device_put(self._params, state_shardings(self._params, mesh))
            self.cache = jax.tree.map(
                lambda x: jax.device_put(x, logical_to_sharding(CACHE_LOGICAL_AXES, mesh, x.shape)),
                self.cache,
            )
        # A CPU decode loop reads per-layer copies of the weights (`steps.decode_steps`).
        self._split = (
            mesh.devices.flat[0] if mesh is not None else jax.devices()[0]
        ).platform == "cpu"
        self.update_params(self._params)
        self._state = steps.SlotState.empty(self.num_slots, self.max_stop_ids)
        signature = (
            self._graphdef,
            tuple((x.shape, str(x.dtype)) for x in jax.tree.leaves((self._params, self.cache))),
        )
        self._shapes = ShapePlanner(signature, token_cost_of(model.config), shape_slack)
        self._sessions: dict[Hashable, _Session] = {}
        self._slot_owner: list[Hashable | None] = [None] * self.num_slots
        self._queue: collections.deque[Hashable] = collections.deque()

    # ------------------------------------------------------------------ driver API
    def submit(
        self,
        session_id: Hashable,
        new_token_ids: Sequence[int],
        params: SamplingParams | None = None,
        seed: int = 0,
    ) -> None:
        """Queue a turn: the first call of a session gives the whole prompt, later calls only
        the tokens appended since its previous turn (they follow that turn's sampled tokens)."""
        params = SamplingParams() if params is None else params
        if not isinstance(params, SamplingParams):
            raise TypeError(f"params must be a SamplingParams, got {type(params).__name__}")
        if params.stop_strings and self.decode_fn is None:
            raise ValueError(
                "stop_strings need a detokenizer: construct the Engine with decode_fn=ids->str"
            )
        if len(params.stop_token_ids) > self.max_stop_ids:
            raise ValueError(
                f"{len(params.stop_token_ids)} stop_token_ids exceed max_stop_ids="
                f"{self.max_stop_ids}"
            )
        if not 0 <= int(seed) < 2**32:
            raise ValueError(f"seed must be in [0, 2**32), got {seed}")
        ids = check_token_ids(new_token_ids, self.vocab_size)
        session = self._sessions.get(session_id)
        if session is None:
            if not ids:
                raise ValueError(f"session {session_id!r}: the first turn needs a non-empty prompt")
            session = _Session()
        elif session.status != "idle":
            raise ValueError(
                f"session {session_id!r} already has a turn {session.status}; wait "
                "for it to finish before submitting the next one"
            )
        context = session.cache_len + len(session.pending) + len(ids)
        if context > self.max_len - 1:
            raise ValueError(
                f"session {session_id!r}: context of {context} tokens leaves no room "
                f"to generate in max_len={self.max_len}"
            )
        if not ids and not session.pending:
            raise ValueError(f"session {session_id!r}: nothing to condition on")
        session.pending.extend(ids)
        session.status, session.params, session.seed = "queued", params, int(seed)
        self._sessions[session_id] = session
        self._queue.append(session_id)

    def step(self) -> list[Completion]:
        """Admit and prefill queued turns, decode running ones for up to `steps_per_sync` tokens;
        return the turns that finished (in no particular order)."""
        finished: list[Completion] = []
        with self._mesh_context():
            ready = self._admit()
            if ready:
                finished += self._prefill(ready)
            if self._state.active.any():
                finished += self._decode()
        return finished

    def release(self, session_id: Hashable) -> None:
        """End a session: cancel its queued or running turn and free its slot."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            raise KeyError(f"unknown session {session_id!r}")
        if session.status == "queued":
            self._queue.remove(session_id)
        if session.slot is not None:
            self._state.active[session.slot] = False
            self._slot_owner[session.slot] = None

    def run(self, requests: Sequence[Request]) -> list[Completion]:
        """Single-turn convenience: run every request to completion, release its session and
        return the completions in request order. Needs an engine with no turn in flight (their
        completions would otherwise be swallowed here)."""
        if self.has_work():
            raise ValueError(
                "Engine.run needs an engine with no queued or running turn; drive "
                "mixed workloads with submit/step"
            )
        ids = [r.session_id for r in requests]
        if len(set(ids)) != len(ids):
            raise ValueError("Engine.run needs distinct session ids")
        clash = [s for s in ids if s in self._sessions]
        if clash:
            raise ValueError(f"sessions {clash} already exist in this engine")
        for r in requests:
            self.submit(r.session_id, r.token_ids, r.params, r.seed)
        done: dict[Hashable, Completion] = {}
        while len(done) < len(requests):
            finished = self.step()
            if not finished and self._queue and not self._state.active.any():
                raise RuntimeError(
                    f"{len(self._queue)} request(s) wait for a slot, but all "
                    f"{self.num_slots} slots are held by idle sessions; release "
                    "them before Engine.run"
                )
            for completion in finished:
                done[completion.session_id] = completion
                self.release(completion.session_id)  # frees the slot for a waiting request
        return [done[s] for s in ids]

    @property
    def num_free_slots(self) -> int:
        return self._slot_owner.count(None)

    @property
    def params(self):
        """The weights sampled with (`update_params` takes the same shardings)."""
        return self._params

    def update_params(self, state) -> None:
        """Swap in new weights (same structure, shapes and shardings as the model's `nnx.split`
        state): the weights are a jit argument, so nothing recompiles. Used by RL after each
        learner step; sessions in flight continue with the new weights."""
        if jax.tree.structure(state) != jax.tree.structure(self._params):
            raise ValueError("update_params: the new state does not match the engine's model")
        self._params = state
        self._layer_params = (
            steps.split_layer_params(self._graphdef, state) if self._split else None
        )

    def has_work(self) -> bool:
        return bool(self._queue) or bool(self._state.active.any())

    def context_length(self, session_id: Hashable) -> int:
        """Tokens in the session's context so far (prompt, sampled and appended tokens)."""
        session = self._sessions[session_id]
        return session.cache_len + len(session.pending)

    # ------------------------------------------------------------------ internals
    def _mesh_context(self):
        return jax.set_mesh(self.mesh) if self.mesh is not None else contextlib.nullcontext()

    def _admit(self) -> list[Hashable]:
        """Pop queued turns that have (or can get) a slot; the rest keep their queue order."""
        ready, waiting = [], collections.deque()
        while self._queue:
            session_id = self._queue.popleft()
            session = self._sessions[session_id]
            if session.slot is None and None in self._slot_owner:
                session.slot = self._slot_owner.index(None)
                self._slot_owner[session.slot] = session_id
            (ready if session.slot is not None else waiting).append(session_id)
        self._queue = waiting
        return ready

    def _prefill(self, ready: list[Hashable]) -> list[Completion]:
        """Write each ready turn's pending tokens at its row's length (in chunks of at most
        `max_prefill_len`), then start decoding from the token sampled after the last one.

        Fresh sessions that open with the same prompt (the G samples of a GRPO group, the k
        trials of pass^k) share its prefill: the first of them prefills all but the prompt's last
        token, its cache row is copied to the others (`steps.copy_rows`), and each starts
        decoding from that last token, drawing its first token with its own seed in the decode
        loop. Only already existing prefill and decode programs run, plus one small copy."""
        sessions = [self._sessions[s] for s in ready]
        firsts: dict[tuple[int, ...], _Session] = {}
        followers: list[tuple[_Session, _Session]] = []
        for s in sessions:
            if s.cache_len == 0 and len(s.pending) > 1:
                first = firsts.setdefault(tuple(s.pending), s)
                if first is not s:
                    followers.append((s, first))
        shared, copied = {id(f) for _, f in followers}, {id(f) for f, _ in followers}
        leaders = [s for s in sessions if id(s) in shared]
        last_ids = [s.pending.pop() for s in leaders]  # held back: decoded, not prefilled
        self._prefill_chunks([s for s in sessions if id(s) not in copied], skip_turn=shared)
        if leaders:
            by_leader = dict(zip((id(s) for s in leaders), last_ids))
            n = bucket(len(followers), maximum=self.num_slots)
            src = np.full((n,), self.num_slots, np.int32)
            dst = np.full((n,), self.num_slots, np.int32)
            for j, (f, first) in enumerate(followers):
                src[j], dst[j] = first.slot, f.slot
                f.pending, f.cache_len = [], first.cache_len
            self.cache = steps.copy_rows(self.cache, src, dst)
            for f, first in followers:
                self._start_turn(f, by_leader[id(first)])
            for s in leaders:
                self._start_turn(s, by_leader[id(s)])
        finished = []
        for session_id, s in zip(ready, sessions):
            done = self._finish_if_done(session_id, s, 0)
            if done is not None:
                finished.append(done)
        return finished

    def _prefill_chunks(self, sessions: list[_Session], skip_turn: set[int]) -> None:
        """The prefill device calls for `sessions`' pending tokens; starts the turn of every
        session except those in `skip_turn` (ids), whose sampled token is not used."""
        num_rows = bucket(len(sessions), maximum=self.num_slots)
        sampled = []  # (row index, session) of rows whose last pending token was in that chunk
        while any(s.pending for s in sessions):
            todo = [s for s in sessions if s.pending]
            longest = max(len(s.pending) for s in todo)
            length = bucket(longest, self.min_prefill_len, self.max_prefill_len)
            rows = np.full((num_rows,), self.num_slots, np.int32)
            tokens = np.zeros((num_rows, length), np.int32)
            positions = np.full((num_rows, length), self.max_len, np.int32)
            last = np.zeros((num_rows,), np.int32)
            seeds = np.zeros((num_rows,), np.uint32)
            temp, top_k, top_p = (
                np.zeros((num_rows,), np.float32),
                np.zeros((num_rows,), np.int32),
                np.ones((num_rows,), np.float32),
            )
            completing = []
            for i, s in enumerate(todo):
                n = min(len(s.pending), length)
                rows[i], last[i], seeds[i] = s.slot, n - 1, s.seed
                tokens[i, :n] = s.pending[:n]
                positions[i, :n] = np.arange(s.cache_len, s.cache_len + n)
                temp[i], top_k[i], top_p[i] = s.params.temperature, s.params.top_k, s.params.top_p
                del s.pending[:n]
                s.cache_len += n
                if not s.pending:
                    completing.append((i, s))
            kv_len = steps.prefill_kv_len(positions, self.max_len, self.min_kv_len)
            n_rows, n_cols, kv_len = self._shapes.prefill(
                num_rows, length, kv_len, self.max_prefill_len
            )
            pad = lambda x, value, cols=False: np.pad(
                x,
                ((0, n_rows - num_rows),) + (((0, n_cols - length),) if cols else ()),
                constant_values=value,
            )
            self.cache, new_tokens, logprobs = steps.prefill(
                self._graphdef,
                self._params,
                self.cache,
                pad(rows, self.num_slots),
                pad(tokens, 0, True),
                pad(positions, self.max_len, True),
                pad(last, 0),
                pad(seeds, 0),
                pad(temp, 0),
                pad(top_k, 0),
                pad(top_p, 1),
                kv_len=kv_len,
            )
            sampled.append((completing, new_tokens, logprobs))
        # One device->host transfer for all chunks.
        fetched = jax.device_get([(t, lp) for _, t, lp in sampled])
        for (completing, _, _), (new_tokens, logprobs) in zip(sampled, fetched):
            for i, s in completing:
                if id(s) not in skip_turn:
                    self._start_turn(s, int(new_tokens[i]), float(logprobs[i]))

    def _start_turn(self, s: _Session, token: int, logprob: float | None = None) -> None:
        """Start decoding a turn. With `logprob`, `token` is the turn's first token, sampled by
        the prefill. Without, it is the context's last id, held back from the prefill (a shared
        prompt): the decode loop writes it and draws the first token with the key a prefill
        would have used."""
        st, slot, p = self._state, s.slot, s.params
        sampled = logprob is not None
        if not sampled:
            s.cache_len += 1  # as after a prefill: the context, its last id written by the decode
        s.status, s.turn_start = "decoding", s.cache_len
        s.turn_ids, s.turn_logprobs = ([token], [logprob]) if sampled else ([], [])
        st.last_token[slot] = token
        st.position[slot] = s.cache_len if sampled else s.cache_len - 1
        st.num_generated[slot], st.max_new[slot] = int(sampled), p.max_new_tokens
        st.temperature[slot], st.top_k[slot], st.top_p[slot] = p.temperature, p.top_k, p.top_p
        st.seed[slot] = s.seed
        st.stop_ids[slot] = -1
        st.stop_ids[slot, : len(p.stop_token_ids)] = p.stop_token_ids
        if not sampled:  # nothing sampled yet, so nothing can have ended the turn
            st.active[slot], st.finish[slot] = True, steps.FINISH_NONE
            return
        row = slice(slot, slot + 1)
        done, code = steps.finish_check(
            st.last_token[row],
            st.num_generated[row],
            st.position[row],
            st.stop_ids[row],
            st.max_new[row],
            self.max_len,
            xp=np,
        )
        st.active[slot] = not done[0]
        st.finish[slot] = code[0] if done[0] else steps.FINISH_NONE

    def _decode(self) -> list[Completion]:
        st = self._state
        kv_len = steps.decode_kv_len(
            st.position,
            st.active,
            st.num_generated,
            st.max_new,
            self.steps_per_sync,
            self.max_len,
            self.min_kv_len,
        )
        kv_len = self._shapes.decode(kv_len, self.num_slots, self.steps_per_sync)
        self.cache, state, tokens, logprobs = steps.decode_steps(
            self._graphdef,
            self._params,
            self.cache,
            self._state,
            self.steps_per_sync,
            kv_len=kv_len,
            layer_params=self._layer_params,
        )
        state, tokens, logprobs = jax.device_get((state, tokens, logprobs))
        self._state = steps.SlotState(*(np.array(x) for x in state))
        finished = []
        for slot, session_id in enumerate(self._slot_owner):
            s = self._sessions.get(session_id) if session_id is not None else None
            if s is None or s.status != "decoding":
                continue
            emitted = tokens[slot] >= 0
            if not emitted.any():
                continue
            first_new = len(s.turn_ids)
            s.turn_ids.extend(int(t) for t in tokens[slot][emitted])
            s.turn_logprobs.extend(float(x) for x in logprobs[slot][emitted])
            done = self._finish_if_done(session_id, s, first_new)
            if done is not None:
                finished.append(done)
        return finished

    def _finish_if_done(self, session_id, s: _Session, first_new: int) -> Completion | None:
        """Close the turn if the device finished it or a stop string appeared in its text."""
        slot, st = s.slot, self._state
        keep, reason, stop = len(s.turn_ids), None, None
        cut = self._stop_string_cut(s, first_new)
        if cut is not None:
            keep, stop = cut
            reason = "stop"
        elif not st.active[slot]:
            reason = steps.FINISH_REASONS[int(st.finish[slot])]
            last = s.turn_ids[-1]
            stop = last if reason == "stop" else None
        if reason is None:
            return None
        ids, lps = s.turn_ids[:keep], s.turn_logprobs[:keep]
        # Tokens sampled after a stop string were written to the cache beyond the new length;
        # those slots are never attended and get overwritten by the next turn.
        s.cache_len = s.turn_start + keep - 1
        s.pending = [ids[-1]]
        s.status, s.turn_ids, s.turn_logprobs = "idle", [], []
        st.active[slot] = False
        return Completion(
            session_id,
            np.asarray(ids, np.int32),
            np.asarray(lps, np.float32),
            reason,
            stop,
            s.turn_start,
        )

    def _stop_string_cut(self, s: _Session, first_new: int) -> tuple[int, str] | None:
        """(tokens to keep, matched string) for the first token completing a stop string."""
        stops = s.params.stop_strings
        if not stops or not any(x in self.decode_fn(s.turn_ids) for x in stops):
            return None
        for end in range(max(first_new, 0) + 1, len(s.turn_ids) + 1):
            text = self.decode_fn(s.turn_ids[:end])
            hits = [x for x in stops if x in text]
            if hits:
                return end, min(hits, key=text.find)
        return None
