"""Orbax checkpoints: train state + data-iterator state, async, keep-N, resume, preemption save.

A checkpoint at step s holds everything needed to continue bit-for-bit: params, optimizer state,
step, and the input pipeline's state (JSON). SIGTERM (preemption) sets a flag that the training
loop checks after each step to write a final checkpoint and exit cleanly.
"""
from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    def __init__(self, directory: str | Path, max_to_keep: int = 3, save_interval_steps: int = 100,
                 async_save: bool = True):
        self.directory = Path(directory).absolute()
        self.save_interval_steps = save_interval_steps
        self._manager = ocp.CheckpointManager(
            self.directory,
            options=ocp.CheckpointManagerOptions(
                max_to_keep=max_to_keep, save_interval_steps=1,
                enable_async_checkpointing=async_save, create=True))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def should_save(self, step: int) -> bool:
        return step % self.save_interval_steps == 0

    def save(self, step: int, state: Any, data_state: dict | None = None,
             force: bool = False) -> bool:
        args = ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  data=ocp.args.JsonSave(data_state or {}))
        return self._manager.save(step, args=args, force=force)

    def restore(self, abstract_state: Any, step: int | None = None) -> tuple[Any, dict]:
        """Restore onto the shardings of `abstract_state` (arrays or ShapeDtypeStructs)."""
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"no checkpoint to restore in {self.directory}")
        target = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), abstract_state)
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), data=ocp.args.JsonRestore()))
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

    def __enter__(self) -> "PreemptionGuard":
        if threading.current_thread() is threading.main_thread():
            self._prev = signal.signal(signal.SIGTERM, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        self.requested = True

    def __exit__(self, *exc) -> None:
        if self._prev is not None:
            signal.signal(signal.SIGTERM, self._prev)
