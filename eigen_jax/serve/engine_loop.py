"""`EngineLoop`: one background thread owns the `Engine`; HTTP handlers only enqueue and wait.

Why a single owner: the engine (its cache, slot table and host-side decoding state) is not
thread-safe, and continuous batching needs one place that sees every pending request. Handlers
call `submit`, which returns a `concurrent.futures.Future`; the loop thread drains new requests
into the engine, calls `Engine.step()` (which admits queued turns into free slots, prefills them
together and decodes every running turn for `steps_per_sync` tokens), resolves the futures of the
turns that finished and frees their slots at once. So N concurrent requests decode in one batch,
and a request arriving mid-decode joins at the next step instead of waiting for the batch to end.

A cancelled future (client gone) frees its slot at the next loop iteration. An exception while
admitting a request fails that request alone; one inside `Engine.step()` fails the requests that
step touched (every running turn) and frees their slots, and the loop goes on serving: one
hostile request cannot take the server down for everyone. Only `MAX_CONSECUTIVE_STEP_FAILURES`
failed steps in a row (the engine itself is broken), or a failure outside the engine, stop the
loop; then every pending request fails and `/health` answers 503 rather than hanging callers.
"""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
from collections.abc import Sequence
from typing import Any, Self

from eigen_jax.sampling.engine import Completion, Engine
from eigen_jax.sampling.params import SamplingParams

MAX_CONSECUTIVE_STEP_FAILURES = 3


class RequestError(ValueError):
    """The engine rejected a request (bad ids, context too long, too many stop ids)."""


class EngineFailure(RuntimeError):
    """The engine loop is not running (it failed, or it was closed)."""


class EngineLoop:
    """Serve `engine` from a daemon thread. Use as a context manager or call `start`/`close`.

    Requests submitted before `start()` are admitted together at the first step, which lets
    tests (and warm-up) fill every slot deterministically.
    """

    def __init__(self, engine: Engine):
        self.engine = engine
        self._cond = threading.Condition()
        self._incoming: list[
            tuple[int, list[int], SamplingParams, int, concurrent.futures.Future]
        ] = []
        self._cancelled: list[int] = []
        self._futures: dict[int, concurrent.futures.Future] = {}  # loop thread only
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._closing = False
        self.error: BaseException | None = None
        self.requests_done = 0
        self.tokens_generated = 0
        self.peak_running = 0  # most slots holding a turn at once (evidence of batching)
        self.step_failures = 0  # failed engine steps in a row (reset by a good one)
        self.requests_failed = 0  # requests failed by an engine exception, loop still up

    # ------------------------------------------------------------------ caller side
    def start(self) -> EngineLoop:
        if self._thread is not None:
            raise RuntimeError("EngineLoop already started")
        self._thread = threading.Thread(target=self._run, name="eigen-jax-engine", daemon=True)
        self._thread.start()
        return self

    def submit(
        self, token_ids: Sequence[int], params: SamplingParams, seed: int = 0
    ) -> concurrent.futures.Future:
        """Queue one single-turn request; the future resolves to its `Completion`, or raises
        `RequestError` (bad request) / `EngineFailure` (loop down)."""
        future: concurrent.futures.Future = concurrent.futures.Future()
        with self._cond:
            if self._closing or self.error is not None:
                raise EngineFailure(self._down_reason())
            session_id = next(self._ids)
            self._incoming.append((session_id, list(token_ids), params, int(seed), future))
            self._cond.notify()
        future.add_done_callback(lambda f, s=session_id: f.cancelled() and self._cancel(s))
        return future

    def generate(
        self,
        token_ids: Sequence[int],
        params: SamplingParams,
        seed: int = 0,
        timeout: float | None = None,
    ) -> Completion:
        """Blocking convenience around `submit`."""
        return self.submit(token_ids, params, seed).result(timeout)

    @property
    def healthy(self) -> bool:
        return (
            self._thread is not None
            and self._thread.is_alive()
            and self.error is None
            and not self._closing
        )

    def stats(self) -> dict[str, Any]:
        with self._cond:
            queued = len(self._incoming)
        return {
            "requests_done": self.requests_done,
            "tokens_generated": self.tokens_generated,
            "requests_failed": self.requests_failed,
            "step_failures": self.step_failures,
            "peak_running": self.peak_running,
            "incoming": queued,
            "num_slots": self.engine.num_slots,
            "max_len": self.engine.max_len,
        }

    def close(self, timeout: float | None = 30.0) -> None:
        """Stop the loop; requests still pending fail with `EngineFailure`."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._fail_all(EngineFailure("the server is shutting down"))

    def __enter__(self) -> Self:
        return self.start() if self._thread is None else self

    def __exit__(self, *exc) -> None:
        self.close()

    # ------------------------------------------------------------------ loop thread
    def _cancel(self, session_id: int) -> None:
        with self._cond:
            self._cancelled.append(session_id)
            self._cond.notify()

    def _down_reason(self) -> str:
        if self.error is not None:
            return f"the engine failed: {type(self.error).__name__}: {self.error}"
        return "the server is shutting down"

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    while not (
                        self._incoming or self._cancelled or self._closing or self.engine.has_work()
                    ):
                        self._cond.wait()
                    if self._closing:
                        return
                    incoming, self._incoming = self._incoming, []
                    cancelled, self._cancelled = self._cancelled, []
                self._drop(cancelled)
                self._admit(incoming)
                if self.engine.has_work():
                    self._step()
        except BaseException as err:  # noqa: BLE001 - reported to every waiting caller
            self.error = err
            self._fail_all(EngineFailure(self._down_reason()))

    def _drop(self, cancelled: list[int]) -> None:
        for session_id in cancelled:
            if self._futures.pop(session_id, None) is not None:
                self.engine.release(session_id)

    def _admit(self, incoming) -> None:
        for session_id, ids, params, seed, future in incoming:
            if future.cancelled():
                continue
            try:
                self.engine.submit(session_id, ids, params, seed)
            except (ValueError, TypeError, OverflowError) as err:
                self._forget(session_id)
                _resolve(future, error=RequestError(str(err)))
                continue
            except Exception as err:  # noqa: BLE001 - this request's fault or not, only it fails
                self._forget(session_id)
                self.requests_failed += 1
                _resolve(
                    future,
                    error=EngineFailure(
                        f"the engine could not admit the request: {type(err).__name__}: {err}"
                    ),
                )
                continue
            self._futures[session_id] = future

    def _forget(self, session_id: int) -> None:
        """Free whatever the engine holds for a failed session (it may hold nothing)."""
        try:
            self.engine.release(session_id)
        except KeyError:
            pass

    def _step(self) -> None:
        try:
            finished = self.engine.step()
        except Exception as err:  # noqa: BLE001 - fail the touched requests, keep serving
            self.step_failures += 1
            if self.step_failures >= MAX_CONSECUTIVE_STEP_FAILURES:
                raise
            touched, self._futures = self._futures, {}
            for session_id in touched:
                self._forget(session_id)
            self.requests_failed += len(touched)
            failure = EngineFailure(f"the engine step failed: {type(err).__name__}: {err}")
            for future in touched.values():
                _resolve(future, error=failure)
            return
        self.step_failures = 0
        self.peak_running = max(
            self.peak_running, self.engine.num_slots - self.engine.num_free_slots
        )
        for completion in finished:
            self.engine.release(completion.session_id)
            future = self._futures.pop(completion.session_id, None)
            if future is None:
                continue
            self.requests_done += 1
            self.tokens_generated += completion.num_tokens
            _resolve(future, result=completion)

    def _fail_all(self, error: BaseException) -> None:
        with self._cond:
            pending = [f for *_, f in self._incoming]
            self._incoming = []
        pending += list(self._futures.values())
        self._futures.clear()
        for future in pending:
            _resolve(future, error=error)


def _resolve(
    future: concurrent.futures.Future, result: Any = None, error: BaseException | None = None
) -> None:
    """Set a future's outcome unless the caller cancelled it meanwhile."""
    try:
        if error is not None:
            future.set_exception(error)
        else:
            future.set_result(result)
    except concurrent.futures.InvalidStateError:
        pass
