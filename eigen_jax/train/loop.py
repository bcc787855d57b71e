"""The scaffold every training run shares (agent SFT, user SFT, GRPO): the run folder, restoring
the latest checkpoint, the step loop with metrics and preemption, the HF export and `result.json`.

A run builds its programs, then hands `TrainLoop.run` one function, `step(step, state) -> (state,
metrics)`, and one more that returns the data state to checkpoint beside the train state (the
input pipeline's position, reward curves). Time spent in earlier parts of a resumed run travels
in the checkpoint, so a result's `seconds` covers the whole run.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from typing import Any

import tqdm
from absl import logging

from eigen_jax import models, multihost, paths
from eigen_jax.train.checkpoint import Checkpointer, PreemptionGuard, save_or_stop
from eigen_jax.train.metrics import MetricsWriter

StepFn = Callable[[int, Any], tuple[Any, dict[str, Any]]]


class TrainLoop:
    """`workdir/checkpoints` (orbax), `workdir/tb` (metrics), `workdir/hf`, `workdir/result.json`;
    `workdir` may be any epath URL."""

    def __init__(
        self,
        workdir,
        num_steps: int,
        *,
        metrics_prefix: str,
        checkpoint_every: int,
        keep_checkpoints: int,
        log_every: int,
        console_keys: tuple[str, ...] = (),
    ):
        self.workdir = paths.resolve(workdir)
        self.num_steps = num_steps
        self.ckpt = Checkpointer(
            self.workdir / "checkpoints",
            max_to_keep=keep_checkpoints,
            save_interval_steps=checkpoint_every,
        )
        self._metrics = (metrics_prefix, log_every, console_keys)
        self._seconds_before = 0.0
        self._started = time.perf_counter()

    def latest_step(self) -> int | None:
        return self.ckpt.latest_step()

    def restore(self, state) -> tuple[Any, dict[str, Any] | None]:
        """(state, the data state saved with it) at the latest checkpoint; (state, None) when
        the run has none yet."""
        if self.ckpt.latest_step() is None:
            return state, None
        state, data = self.ckpt.restore(state)
        self._seconds_before = float(data.get("seconds", 0.0))
        logging.info("resumed %s from step %d", self.workdir, self.ckpt.latest_step())
        return state, data

    def seconds(self) -> float:
        return self._seconds_before + time.perf_counter() - self._started

    def run(self, state, start: int, step: StepFn, data_state: Callable[[], dict[str, Any]]):
        """Steps `start .. num_steps - 1`; saves when due, at the last step and on SIGTERM (any
        process; then it stops early). Returns the last state."""
        prefix, log_every, keys = self._metrics
        # A progress bar (total, rate, ETA) on an interactive console, a log line otherwise.
        bar = tqdm.tqdm(
            total=self.num_steps,
            initial=start,
            desc=prefix.rstrip("/"),
            unit="step",
            dynamic_ncols=True,
            disable=not (multihost.is_primary() and sys.stderr.isatty()),
        )
        writer = MetricsWriter(
            self.workdir / "tb",
            prefix=prefix,
            console_keys=keys,
            console_every=log_every if bar.disable else 0,
        )
        with PreemptionGuard() as guard, bar:
            for i in range(start, self.num_steps):
                state, metrics = step(i, state)
                bar.set_postfix_str(writer.summary(writer.write(i + 1, metrics)), refresh=False)
                bar.update(1)
                if save_or_stop(
                    self.ckpt,
                    guard,
                    i + 1,
                    self.num_steps,
                    state,
                    lambda: dict(data_state(), seconds=self.seconds()),
                ):
                    break
        self.ckpt.close()
        writer.close()
        return state

    def finish(
        self,
        result: dict[str, Any],
        finished: bool,
        export: Callable[[Any], dict[str, str]] | None = None,
    ) -> dict[str, Any]:
        """`result` + `seconds` (+ the folders `export(workdir / "hf")` wrote, e.g. `hf_dir`,
        when `finished`), written once as `result.json`."""
        result = dict(result, seconds=self.seconds())
        if export is not None and finished:
            result.update(export(self.workdir / "hf"))
        return write_result(self.workdir, result)


def write_result(workdir, result: dict[str, Any]) -> dict[str, Any]:
    """`result.json` of a run, written once (process 0); every process returns the result."""
    if multihost.is_primary():
        (paths.resolve(workdir) / "result.json").write_text(json.dumps(result, indent=1))
    multihost.barrier("run_result")
    return result


def export_pretrained(
    model,
    config,
    hf_dir,
    tokenizer_dir: str,
    objective: str = "agent",
    merged: bool = True,
    base_model: str | None = None,
) -> dict[str, str]:
    """HF safetensors + config (eos/pad ids of the tokenizer) + generation_config.json +
    tokenizer + the prompt format it was trained with (`chat.prompt_format`: an agent records
    gin's `agent_prompt` mode, a user simulator the full flipped view) in `hf_dir` (any epath
    scheme). A model with LoRA adapters also writes them in the PEFT layout to `adapter` beside
    `hf_dir` (unless they have none: MoE experts), and its merged weights to `hf_dir` only when
    `merged`. Every process takes part in the gathers, process 0 writes; local-only writers are
    staged and copied. Returns the folders written: {"hf_dir", "adapter_dir"}."""
    from eigen_jax.chat import prompt_format
    from eigen_jax.chat.generation_config import write_generation_files
    from eigen_jax.models import lora_io

    hf_dir, out = paths.resolve(hf_dir), {}
    if lora_io.has_adapters(model):
        if lora_io.peft_exportable(model.config):
            out["adapter_dir"] = str(hf_dir.parent / "adapter")
            with paths.local_staging(paths.resolve(out["adapter_dir"]), "adapter") as local:
                lora_io.save_adapter(model, str(local), base_model)
            multihost.barrier("adapter_export")
        if not merged:
            return out
        model = lora_io.merge_adapters(model)
        config = model.config
    with paths.local_staging(hf_dir, "hf_export") as local:
        models.save_pretrained(model, config, str(local))
        if multihost.is_primary():
            copy_tokenizer(tokenizer_dir, paths.resolve(local))
            write_generation_files(local)  # eos = the chat template's end of turn
            prompt_format.write(
                local,
                prompt_format.current()
                if objective == "agent"
                else prompt_format.PromptFormat("full"),
            )
    multihost.barrier("hf_export")
    return dict(out, hf_dir=str(hf_dir))


TOKENIZER_FILES = (
    "special_tokens_map.json",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
    "chat_template.jinja",
)


def copy_tokenizer(src, dst) -> None:
    """The tokenizer files of `src` into `dst` (kept where `dst` has them already), so an
    exported checkpoint is servable on its own: config + weights + tokenizer."""
    src, dst = paths.resolve(src), paths.resolve(dst)
    for f in src.iterdir():
        if f.name.startswith("tokenizer") or f.name in TOKENIZER_FILES:
            if not (dst / f.name).exists():
                (dst / f.name).write_bytes(f.read_bytes())
