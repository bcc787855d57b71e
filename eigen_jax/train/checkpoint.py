"""Orbax checkpoints: train state + data-iterator state, async, keep-N, resume, preemption save.

A checkpoint at step s holds everything needed to continue bit-for-bit: params, optimizer state,
step, and the input pipeline's state (JSON). SIGTERM (preemption) sets a flag that the training
loop checks after each step to write a final checkpoint and exit cleanly.

Multi-process: every process calls save/restore (orbax writes each array shard once, from the
process that holds it, and the metadata from process 0); the directory may be any epath URL
(`gs://...`). A SIGTERM reaches one host at a time, so the loop asks `requested_anywhere()`,
which is the same answer on every process, and all of them save the same step.
"""

from __future__ import annotations

import os
import signal
import threading
from collections.abc import Callable
from typing import Any

import jax
import orbax.checkpoint as ocp
from absl import logging


class Checkpointer:
    def __init__(
        self,
        directory: str | os.PathLike,
        max_to_keep: int = 3,
        save_interval_steps: int = 100,
        async_save: bool = True,
    ):
        from eigen_jax import paths

        self.directory = paths.resolve(directory)
        self.save_interval_steps = save_interval_steps
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep,
                save_interval_steps=1,
                enable_async_checkpointing=async_save,
                create=True,
            ),
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def should_save(self, step: int) -> bool:
        return step % self.save_interval_steps == 0

    def save(
        self, step: int, state: Any, data_state: dict | None = None, force: bool = False
    ) -> bool:
        args = ocp.args.Composite(
            state=ocp.args.StandardSave(state), data=ocp.args.JsonSave(data_state or {})
        )
        return self._manager.save(step, args=args, force=force)

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restore onto the shardings of `abstract_state` (arrays or ShapeDtypeStructs)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint to restore in {self.directory}")
        target = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), abstract_state
        )
        out = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()
            ),
        )
        return out.state, dict(out.data or {})

    def wait(self) -> None:
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


class PreemptionGuard:
    """Turns SIGTERM into a flag (`guard.requested`) so the loop can save and exit."""

    def __init__(self):
        self.requested = False
        self._prev = None

    def __enter__(self) -> PreemptionGuard:
        if threading.current_thread() is threading.main_thread():
            self._prev = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def requested_anywhere(self) -> bool:
        """Whether any process got SIGTERM (a collective: every process must ask, each step)."""
        from eigen_jax import multihost

        return multihost.any_process(self.requested)

    def __exit__(self, *exc) -> None:
        if self._prev is not None:
            signal.signal(signal.SIGTERM, self._prev)


def save_or_stop(
    ckpt: Checkpointer,
    guard: PreemptionGuard,
    done: int,
    last_step: int,
    state: Any,
    data_state: Callable[[], dict],
) -> bool:
    """A learner loop's end of step: save when due, at the last step, or when any process got
    SIGTERM (then every process saves the same `done` step); True when the loop must stop."""
    stop = guard.requested_anywhere()
    if ckpt.should_save(done) or done == last_step or stop:
        ckpt.save(done, state, data_state(), force=True)
    if stop:
        logging.warning("SIGTERM: saved step %d, exiting", done)
    return stop


def check_counts(owner: str, **minimums: tuple[int, int]) -> None:
    """`name=(value, least)` for each count knob of `owner`: one line naming the first that is
    out of range, before any work."""
    for name, (value, least) in minimums.items():
        if value < least:
            raise ValueError(f"{owner}.{name} must be >= {least}, got {value}")
