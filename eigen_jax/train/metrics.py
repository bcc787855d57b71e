"""Metrics to TensorBoard event files in the workdir and a progress/rate line on the console.

Metrics are global values (reduced over the whole mesh), so in a multi-process run process 0
writes them and the others only return them: one event file, one `metrics.jsonl`.
"""
from __future__ import annotations

import json
import time
import os
from typing import Any, Mapping

import numpy as np
from absl import logging


def _scalar(v: Any) -> float:
    return float(np.asarray(v))


class MetricsWriter:
    def __init__(self, logdir: str | os.PathLike, prefix: str = "", console_every: int = 10,
                 write: bool | None = None, console_keys: tuple[str, ...] = ()):
        import jax
        from tensorboardX import SummaryWriter

        from eigen_jax import paths

        self.logdir = paths.resolve(logdir)
        self.writes = jax.process_index() == 0 if write is None else write
        self._tb = self._jsonl = None
        if self.writes:
            self.logdir.mkdir(parents=True, exist_ok=True)
            self._tb = SummaryWriter(str(self.logdir))  # tensorboardX writes gs:// itself
            self._jsonl = (self.logdir / "metrics.jsonl").open("a")
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
        self._jsonl.write(json.dumps({"step": step, **scalars}) + "\n")
        self._jsonl.flush()
        if self.console_every and step % self.console_every == 0:
            logging.info("[%s] step %d (%.0fs) %s", self.prefix.rstrip("/") or "train", step,
                         time.perf_counter() - self._t0, self.summary(scalars))
        return scalars

    def summary(self, scalars: Mapping[str, float]) -> str:
        """`key=value` for the console keys present (every metric when none are set)."""
        keys = [k for k in self.console_keys if k in scalars] or sorted(scalars)
        return " ".join(f"{k}={scalars[k]:.4g}" for k in keys)

    def close(self) -> None:
        if self.writes:
            self._tb.close()
            self._jsonl.close()
