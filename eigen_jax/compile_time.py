"""Seconds JAX spends tracing, lowering and compiling, summed while a `CompileTimer` is open.

Why: on a small CPU a tiny model's jitted programs run in milliseconds but each new shape costs
seconds to compile, so "where did the time go" needs the compile share measured, not guessed.
JAX reports every trace / lowering / backend compile through `jax.monitoring`; one listener,
registered once per process, adds the durations to every open timer.
"""

from __future__ import annotations

import threading

import jax

EVENTS = {
    "/jax/core/compile/jaxpr_trace_duration": "trace_s",
    "/jax/core/compile/jaxpr_to_mlir_module_duration": "lower_s",
    "/jax/core/compile/backend_compile_duration": "compile_s",
}
_open: list[CompileTimer] = []
_lock = threading.Lock()
_registered = False


def _listener(event: str, duration: float, **_) -> None:
    key = EVENTS.get(event)
    if key is None:
        return
    with _lock:
        for timer in _open:
            timer.seconds[key] += duration
            if key == "compile_s":
                timer.compiles += 1


class CompileTimer:
    """`with CompileTimer() as t: ...` then `t.seconds` ({trace_s, lower_s, compile_s}),
    `t.total_s` and `t.compiles` (backend compilations; cache hits do not count). Timers nest:
    an event counts in every timer open when it happens."""

    def __init__(self):
        self.seconds = dict.fromkeys(EVENTS.values(), 0.0)
        self.compiles = 0

    @property
    def total_s(self) -> float:
        return sum(self.seconds.values())

    def __enter__(self) -> CompileTimer:
        global _registered
        with _lock:
            if not _registered:
                jax.monitoring.register_event_duration_secs_listener(_listener)
                _registered = True
            _open.append(self)
        return self

    def __exit__(self, *exc) -> None:
        with _lock:
            _open.remove(self)
