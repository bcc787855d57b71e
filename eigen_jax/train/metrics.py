"""Metrics to TensorBoard event files in the workdir and a progress/rate line on the console,
mirrored to Weights & Biases when a launcher asks for it (`mirror_to_wandb`).

Metrics are global values (reduced over the whole mesh), so in a multi-process run process 0
writes them and the others only return them: one event file, one `metrics.jsonl`, one W&B run.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
import time
from collections.abc import Mapping
from typing import Any

import numpy as np
from absl import logging


def _scalar(v: Any) -> float:
    return float(np.asarray(v))


def _open_for_append(path):
    """`path` opened to append. An object store (`gs://`) has no append: its "a" mode replaces
    the object, losing a resumed run's earlier steps, so the old lines are written first (the
    object is replaced when the file closes)."""
    from eigen_jax import paths

    if not paths.is_url(path):
        return path.open("a")
    old = path.read_text() if path.exists() else ""
    f = path.open("w")
    f.write(old)
    return f


@dataclasses.dataclass(frozen=True)
class WandbSettings:
    """Where every MetricsWriter opened afterwards also logs: one W&B run per writer (a stage:
    its steps restart at 1), the stages of one training run under one `group`."""

    project: str
    mode: str | None = None  # online | offline | disabled; None: wandb reads WANDB_MODE
    group: str | None = None
    config: dict[str, Any] | None = None


_WANDB: WandbSettings | None = None


def mirror_to_wandb(settings: WandbSettings | None) -> None:
    """Set by a launcher's infrastructure flags (`--wandb_project`); None stops mirroring."""
    global _WANDB
    _WANDB = settings


def _start_wandb_run(logdir, name: str):
    """The W&B run a writer mirrors to (None when not asked for); its local files go beside the
    event file when the run folder is local."""
    if _WANDB is None:
        return None
    import wandb

    from eigen_jax import paths

    return wandb.init(
        project=_WANDB.project,
        mode=_WANDB.mode,
        group=_WANDB.group,
        name=name,
        config=_WANDB.config,
        dir=None if paths.is_url(logdir) else str(logdir),
    )


class MetricsWriter:
    def __init__(
        self,
        logdir: str | os.PathLike,
        prefix: str = "",
        console_every: int = 10,
        write: bool | None = None,
        console_keys: tuple[str, ...] = (),
    ):
        import jax
        from tensorboardX import SummaryWriter

        from eigen_jax import paths

        self.logdir = paths.resolve(logdir)
        self.writes = jax.process_index() == 0 if write is None else write
        self._tb = self._jsonl = self._wandb = None
        if self.writes:
            self.logdir.mkdir(parents=True, exist_ok=True)
            # A URL's event file is written locally and copied at close: tensorboardX's own
            # gs:// writer re-uploads the whole file on every flush and again when collected,
            # even after close (at interpreter exit, possibly after the storage is gone).
            self._tb_local = (
                tempfile.mkdtemp(prefix="eigen_jax_tb_") if paths.is_url(self.logdir) else None
            )
            self._tb = SummaryWriter(self._tb_local or str(self.logdir))
            self._jsonl = _open_for_append(self.logdir / "metrics.jsonl")
            self._wandb = _start_wandb_run(self.logdir, prefix.rstrip("/") or self.logdir.name)
        self.prefix = prefix
        self.console_every = console_every
        self.console_keys = console_keys  # the console line's metrics (default: all)
        self._t0 = time.perf_counter()

    def write(self, step: int, metrics: Mapping[str, Any]) -> dict[str, float]:
        scalars = {k: _scalar(v) for k, v in metrics.items()}
        if not self.writes:
            return scalars
        for k, v in scalars.items():
            self._tb.add_scalar(f"{self.prefix}{k}", v, step)
        if self._wandb is not None:  # the same tags and steps as TensorBoard's
            self._wandb.log({f"{self.prefix}{k}": v for k, v in scalars.items()}, step=step)
        self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self._jsonl.flush()
        if self.console_every and step % self.console_every == 0:
            logging.info(
                "[%s] step %d (%.0fs) %s",
                self.prefix.rstrip("/") or "train",
                step,
                time.perf_counter() - self._t0,
                self.summary(scalars),
            )
        return scalars

    def summary(self, scalars: Mapping[str, float]) -> str:
        """`key=value` for the console keys present (every metric when none are set)."""
        keys = [k for k in self.console_keys if k in scalars] or sorted(scalars)
        return " ".join(f"{k}={scalars[k]:.4g}" for k in keys)

    def close(self) -> None:
        if self.writes and self._tb is not None:
            self._tb.close()
            self._jsonl.close()
            self._tb = self._jsonl = None
            if self._wandb is not None:
                self._wandb.finish()
                self._wandb = None
            if self._tb_local:
                from eigen_jax import paths

                paths.copy_tree(self._tb_local, self.logdir)
                shutil.rmtree(self._tb_local, ignore_errors=True)
