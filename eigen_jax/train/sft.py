"""Supervised fine-tuning of the agent or of the user simulator, read top to bottom.

mesh → model (HF checkpoint or random init) → optimizer → sharded train state → grain pipeline →
restore the latest checkpoint (state + iterator) if any → loop: step, metrics, eval, checkpoint;
SIGTERM saves and exits → final checkpoint and HF safetensors export (`workdir/hf`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Sequence
from typing import Any

import gin
import jax
import numpy as np

from eigen_jax import multihost
from eigen_jax import sharding as shd
from eigen_jax.data.pipeline import make_sft_dataset
from eigen_jax.train import state as state_lib
from eigen_jax.train.checkpoint import check_counts
from eigen_jax.train.flops import matmul_peak_flops, train_flops_per_token
from eigen_jax.train.logprobs import score_index
from eigen_jax.train.loop import TrainLoop, export_pretrained
from eigen_jax.train.model_init import init_model, with_adapters
from eigen_jax.train.optimizer import make_optimizer, make_schedule
from eigen_jax.train.router_aux import router_metrics
from eigen_jax.train.sft_loss import sft_loss


def evaluate_loss(eval_fn, params, batches: Sequence[dict[str, jax.Array]]) -> float:
    """Token-level mean NLL over a fixed held-out set of batches."""
    nll = tokens = 0.0
    for b in batches:
        out = eval_fn(params, b)
        nll += float(out["nll_sum"])
        tokens += float(out["tokens"])
    return nll / max(tokens, 1.0)


@gin.configurable(denylist=["workdir"])
def run_sft(
    workdir: str,
    data_dir: str = gin.REQUIRED,
    tokenizer_dir: str = gin.REQUIRED,
    objective: str = "agent",
    num_steps: int = 300,
    batch_size: int = 8,
    seq_len: int = 1024,
    grad_accum_steps: int = 1,
    mesh_shape: Sequence[int] = (1, -1, 1),
    eval_every: int = 50,
    eval_batches: int = 4,
    eval_split: str = "test",
    checkpoint_every: int = 100,
    keep_checkpoints: int = 2,
    seed: int = 0,
    export_hf: bool = True,
    log_every: int = 10,
    peak_flops: float | None = None,
    prompt_loss_weight: float = 0.0,
    project_scored_only: bool = True,
    init_hf_dir: str | None = None,
    router_aux_loss_coef: float = 0.0,
    lora: Any = None,
    init_adapter_dir: str | None = None,
    export_merged: bool = True,
) -> dict[str, Any]:
    """Train; returns {"hf_dir", "eval_loss" (trace), "final_eval_loss", "steps", "seconds"}.

    The model comes from `init_model` (gin: a preset or an HF checkpoint); `init_hf_dir`, when
    given, is the checkpoint to start from instead (the pipeline passes the agent-SFT checkpoint
    to start the user simulator from it).

    `project_scored_only`: project onto the vocabulary only the positions the loss reads (the
    trained role's tokens; `logprobs.score_index`), same loss and gradient. The index width is
    computed on the global batch, which every process reads, so it is one global shape.
    `router_aux_loss_coef`: an MoE model's load-balancing loss weight (HF's definition).
    `lora` (`@LoraConfig()`): train LoRA adapters on the frozen base instead of every weight;
    `init_adapter_dir`: a PEFT adapter to continue training. With adapters the export writes
    the PEFT adapter to `workdir/adapter` and, when `export_merged`, the merged checkpoint to
    `workdir/hf` (what later stages load).
    """
    mesh = _checked_mesh(
        mesh_shape,
        num_steps=num_steps,
        batch_size=batch_size,
        seq_len=seq_len,
        grad_accum_steps=grad_accum_steps,
        eval_every=eval_every,
        checkpoint_every=checkpoint_every,
    )
    model, config = _initial_model(mesh, tokenizer_dir, init_hf_dir)
    model = with_adapters(model, mesh, lora, init_adapter_dir)
    schedule = make_schedule(total_steps=num_steps)
    graphdef, (frozen, rest), state, step_fn, eval_fn = _programs(
        model, make_optimizer(schedule), mesh, grad_accum_steps, router_aux_loss_coef
    )
    loop = TrainLoop(
        workdir,
        num_steps,
        metrics_prefix=f"sft_{objective}/",
        checkpoint_every=checkpoint_every,
        keep_checkpoints=keep_checkpoints,
        log_every=log_every,
        console_keys=CONSOLE_KEYS,
    )
    device_batch = functools.partial(_device_batch, mesh=mesh, scored_only=project_scored_only)
    train_it, eval_set = None, []
    if (loop.latest_step() or 0) < num_steps:  # a finished run needs neither data nor evals
        data = functools.partial(
            make_sft_dataset, data_dir, tokenizer_dir, objective, seq_len, batch_size, seed=seed
        )
        train_it, eval_set = _datasets(
            data, prompt_loss_weight, eval_split, eval_batches, device_batch
        )
    state, saved = loop.restore(state)
    if saved is not None and train_it is not None:
        train_it.set_state(saved["iterator"])
    eval_trace = [tuple(x) for x in (saved or {}).get("eval_trace", [])]
    if eval_set and saved is None:  # the baseline every later eval is compared with
        eval_trace.append((0, evaluate_loss(eval_fn, state.params, eval_set)))
    throughput = _throughput(config, seq_len, batch_size, peak_flops)

    def step(i: int, state):
        t0 = time.perf_counter()
        host = next(train_it)
        state, metrics = step_fn(state, device_batch(host))
        metrics = jax.device_get(metrics)
        out = dict(
            loss=metrics["loss"],
            grad_norm=metrics["grad_norm"],
            learning_rate=float(schedule(i)),
            **throughput(host, time.perf_counter() - t0),
            **router_metrics(metrics),
        )
        if eval_set and ((i + 1) % eval_every == 0 or i + 1 == num_steps):
            eval_trace.append((i + 1, evaluate_loss(eval_fn, state.params, eval_set)))
            out["eval_loss"] = eval_trace[-1][1]
        return state, out

    state = loop.run(
        state,
        int(state.step),
        step,
        lambda: {"iterator": train_it.get_state(), "eval_trace": eval_trace},
    )
    export = functools.partial(
        export_pretrained,
        state_lib.merge(graphdef, state.params, frozen, rest),
        config,
        tokenizer_dir=tokenizer_dir,
        objective=objective,
        merged=export_merged,
        base_model=init_hf_dir,
    )
    result = {
        "steps": int(state.step),
        "eval_loss": eval_trace,
        "final_eval_loss": eval_trace[-1][1] if eval_trace else None,
    }
    return loop.finish(result, int(state.step) >= num_steps, export if export_hf else None)


# The console line of a step: loss, held-out loss when evaluated, speed, schedule.
CONSOLE_KEYS = ("loss", "eval_loss", "tokens_per_s", "mfu", "learning_rate")


def _checked_mesh(mesh_shape, **counts: int):
    """The mesh, once every count is in range and the batch splits over its batch axes (one
    line naming the knob otherwise, before any work)."""
    check_counts("run_sft", **{k: (v, 2 if k == "seq_len" else 1) for k, v in counts.items()})
    batch_size = counts["batch_size"]
    mesh = shd.make_mesh(mesh_shape)
    if batch_size % shd.data_parallel_size(mesh):
        raise ValueError(
            f"batch_size={batch_size} must be divisible by data*fsdp="
            f"{shd.data_parallel_size(mesh)} of mesh {dict(mesh.shape)}"
        )
    return mesh


def _datasets(data, prompt_loss_weight: float, eval_split: str, eval_batches: int, device_batch):
    """The training iterator and the held-out batches (on the devices). Held-out loss is always
    over the trained role's tokens only, whatever the prompt-loss weighting."""
    train_it = iter(data(prompt_loss_weight=prompt_loss_weight))
    held_out = data(prompt_loss_weight=0.0, split=eval_split, shuffle=False, num_epochs=1)
    return train_it, [device_batch(b) for _, b in zip(range(eval_batches), held_out)]


def _programs(model, tx, mesh, grad_accum_steps: int, router_aux_loss_coef: float):
    """(graphdef, (frozen, rest), train state, jitted train step, held-out loss fn), the
    latter two traced under the mesh; `frozen` is a LoRA model's base (else None), an argument
    of both programs."""
    graphdef, params, frozen, rest = state_lib.split_trainable(model)
    state = state_lib.init_train_state(params, tx, mesh)
    loss_fn = functools.partial(sft_loss, router_aux_loss_coef=router_aux_loss_coef)
    step_fn = state_lib.make_train_step(
        graphdef,
        rest,
        tx,
        loss_fn,
        mesh=mesh,
        state_sharding=state_lib.state_shardings(state),
        grad_accum_steps=grad_accum_steps,
        frozen=frozen,
    )
    eval_fn = state_lib.FrozenBound(
        state_lib.MeshBound(
            jax.jit(
                lambda p, b, f=None: sft_loss(state_lib.merge(graphdef, p, f, rest), b, 1.0)[1]
            ),
            mesh,
        ),
        frozen,
    )
    return graphdef, (frozen, rest), state, step_fn, eval_fn


def _initial_model(mesh, tokenizer_dir: str, init_hf_dir: str | None):
    """`init_model`'s model sized to the tokenizer, or the `init_hf_dir` checkpoint (whose
    vocabulary must be the tokenizer's)."""
    from eigen_jax.chat.template import ChatTemplate

    vocab = len(ChatTemplate.from_pretrained(tokenizer_dir).tokenizer)
    if not init_hf_dir:
        return init_model(mesh, vocab_size=vocab)
    model, config = init_model(mesh, hf_dir=init_hf_dir)
    if config.vocab_size != vocab:
        raise ValueError(
            f"init checkpoint {init_hf_dir} has vocab {config.vocab_size}, the "
            f"tokenizer in {tokenizer_dir} has {vocab}"
        )
    return model, config


def _device_batch(host: dict, mesh, scored_only: bool) -> dict[str, jax.Array]:
    """Every process reads the same global batch (one deterministic order, whatever the process
    count) and transfers only the rows its devices hold; so the score index's width is one
    global shape too."""
    if scored_only:
        host = dict(host, score_index=score_index(host["loss_mask"], minimum=64))
    return multihost.global_batch_from_host(host, lambda v: shd.batch_sharding(mesh, v.ndim))


def _throughput(config, seq_len: int, batch_size: int, peak_flops: float | None):
    """`(host batch, seconds) -> {tokens_per_s, mfu}`. MFU = achieved model FLOP/s over the
    measured matmul peak of this host's accelerators (fake CPU devices share the same cores, so
    a CPU host counts once)."""
    per_host = 1 if jax.default_backend() == "cpu" else len(jax.local_devices())
    peak = (peak_flops or matmul_peak_flops(config.compute_dtype)) * per_host
    flops_per_step = train_flops_per_token(config, seq_len) * batch_size * seq_len

    def measure(host: dict, seconds: float) -> dict[str, float]:
        real_tokens = float(np.asarray(host["segment_ids"] > 0).sum())
        return {"tokens_per_s": real_tokens / seconds, "mfu": flops_per_step / seconds / peak}

    return measure
