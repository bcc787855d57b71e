"""Which programs a gin-configured run compiles, and at which shapes (for `launch/compile.py`).

Reads the same bindings `launch/train.py` would act on — `init_model` (the model), the pipeline's
stages, `run_sft` per stage scope, `run_grpo`, the user simulator's engine — without running
anything, and turns them into `programs.Program`s on a mesh of the target's devices.
"""

from __future__ import annotations

import inspect
import json
import os
from collections.abc import Sequence
from typing import Any

import gin
import jax.numpy as jnp
from flax import nnx

from eigen_jax import scopes
from eigen_jax import sharding as shd
from eigen_jax.aot import programs as P
from eigen_jax.models import ModelConfig, get_config
from eigen_jax.models.lora import LoRA
from eigen_jax.sampling.config import SamplerConfig


class PlanError(ValueError):
    """The gin configuration cannot be turned into programs for this target."""


def gin_arg(fn, name: str, scope: str | None = None, gin_name: str | None = None) -> Any:
    """The value a gin-configured call of `fn` (registered as `gin_name`, default its name) in
    `scope` receives for `name`: the scoped binding, else the unscoped one, else the
    signature's default."""
    fn_name = gin_name or fn.__name__
    keys = ([f"{scope}/{fn_name}.{name}"] if scope else []) + [f"{fn_name}.{name}"]
    for key in keys:
        try:
            value = gin.query_parameter(key)
        except ValueError:
            continue
        if isinstance(value, gin.config.ConfigurableReference):
            value = value.scoped_configurable_fn()  # a %MACRO evaluates to its value
        return value
    default = inspect.signature(fn).parameters[name].default
    if default in (gin.REQUIRED, inspect.Parameter.empty):
        raise PlanError(f"{fn_name}.{name} is required and not bound")
    return default


def model_config_from_gin() -> ModelConfig:
    """`init_model`'s model: the checkpoint's config.json when `hf_dir` is a local checkpoint,
    else `preset` (+ overrides); the numerics bindings (dtype, param_dtype, remat) on top."""
    from eigen_jax.train.model_init import init_model

    arg = lambda n: gin_arg(init_model, n)  # noqa: E731
    overrides = dict(arg("config_overrides") or {})
    for name in ("dtype", "param_dtype", "remat", "vocab_size"):
        if arg(name) is not None:
            overrides[name] = arg(name)
    hf_dir, preset = arg("hf_dir"), arg("preset")
    config_json = os.path.join(hf_dir, "config.json") if hf_dir else None
    if config_json and os.path.isfile(config_json):
        with open(config_json) as f:
            overrides.pop("vocab_size", None)
            return ModelConfig.from_hf_config(json.load(f), **overrides)
    if not preset:
        where = f"init_model.hf_dir={hf_dir!r} has no config.json here and " if hf_dir else ""
        raise PlanError(
            f"the gin files name no model size: {where}no init_model.preset is "
            "bound (bind the preset of the checkpoint's size, e.g. 'qwen3-8b')"
        )
    try:
        return get_config(preset, **overrides)
    except KeyError as e:
        raise PlanError(str(e).strip("\"'")) from None


def _stage_names() -> list[str]:
    """The pipeline's stages as gin spells them (`agent/sft_stage`, `grpo_stage`, ...)."""
    try:
        stages = gin.query_parameter("run_pipeline.stages")
    except ValueError:
        return []
    return [str(s).lstrip("@") for s in stages]


def make_mesh(mesh_shape: Sequence[int], devices: list, what: str):
    try:
        return shd.make_mesh(mesh_shape, devices=devices)
    except ValueError as e:
        raise PlanError(f"{what}.mesh_shape {tuple(mesh_shape)}: {e} of the target") from None


def programs_from_gin(devices: list, only: Sequence[str] = ()) -> list[P.Program]:
    """Every program of the gin-configured run, on `devices` (names contain sft / grpo /
    prefill / decode). `only`: keep programs whose name starts with one of these."""
    from eigen_jax.rl.grpo import run_grpo
    from eigen_jax.train.optimizer import make_optimizer, make_schedule
    from eigen_jax.train.sft import run_sft
    from eigen_jax.train.sft_loss import sft_loss

    config = model_config_from_gin()
    stages = _stage_names()
    tx = make_optimizer(make_schedule())
    out: list[P.Program] = []
    sft_scopes = [s.split("/")[0] if "/" in s else None for s in stages if s.endswith("sft_stage")]
    if not stages:
        sft_scopes = [None]
    seen = {}
    for scope in sft_scopes:
        arg = lambda n, scope=scope: gin_arg(run_sft, n, scope)  # noqa: E731
        shape = (
            arg("batch_size"),
            arg("seq_len"),
            arg("grad_accum_steps"),
            tuple(arg("mesh_shape")),
            arg("lora"),
        )
        name = f"sft_{scope}" if scope else "sft"
        if shape in seen:  # the same program: compiled once
            seen[shape].name += f"+{scope}"
            continue
        mesh = make_mesh(shape[3], devices, f"{scope + '/' if scope else ''}run_sft")
        seen[shape] = P.train_program(
            name, config.replace(lora=arg("lora")), mesh, tx, sft_loss, shape[0], shape[1], shape[2]
        )
        out.append(seen[shape])
    if any(s.endswith("grpo_stage") for s in stages):
        out += grpo_programs(config, devices, tx, run_grpo)
    if any(s.endswith("eval_stage") for s in stages):
        out += eval_programs(config, devices)
    if only:
        out = [p for p in out if any(p.name.startswith(o) for o in only)]
    return out


def grpo_programs(config: ModelConfig, devices: list, tx, run_grpo) -> list[P.Program]:
    """The GRPO step (every episode one `max_len` row) and the policy sampler's prefill and
    decode; each counts the others' long-lived arrays (train state, sampler weights and caches,
    the model user simulator's engine) as resident beside it."""
    from eigen_jax.rl.config import GRPOConfig
    from eigen_jax.rl.learner import grpo_loss_fn
    from eigen_jax.rl.rollout import RolloutConfig

    algorithm = _config(run_grpo, "algorithm", GRPOConfig)
    sampler = _config(run_grpo, "sampler", SamplerConfig, scopes.GRPO)
    rollout = _config(run_grpo, "rollout", RolloutConfig, scopes.GRPO)
    mesh = make_mesh(gin_arg(run_grpo, "mesh_shape"), devices, "run_grpo")
    config = config.replace(lora=gin_arg(run_grpo, "lora"))  # the policy's adapters, if any
    grad_accum = gin_arg(run_grpo, "grad_accum_steps")
    multiple = shd.data_parallel_size(mesh) * grad_accum
    rows = -(-algorithm.tasks_per_step * algorithm.group_size // multiple) * multiple
    keys = dict(P.GRPO_KEYS, **({"ref_logprobs": jnp.float32} if algorithm.kl_coef > 0 else {}))
    num_slots, max_len = sampler.num_slots, sampler.max_len
    _, engine_params, engine_cache = P.sampler_arrays(config, mesh, num_slots, max_len)
    if config.lora is not None:  # the sampler's base IS the step's frozen argument: count once
        engine_params = nnx.filter_state(engine_params, LoRA)
    engine = [engine_params, engine_cache]
    engine += _user_engine(config.replace(lora=None), mesh, "grpo_stage", "model")
    step = P.train_program(
        "grpo_step",
        config,
        mesh,
        tx,
        grpo_loss_fn(algorithm, rollout.temperature),
        rows,
        max_len,
        grad_accum,
        keys=keys,
        resident=engine,
    )
    train_state = step.args[0]
    chunk = min(max_len, sampler.max_prefill_len)
    others = [train_state] + engine[2:]
    return [
        step,
        P.prefill_program("grpo_prefill", config, mesh, num_slots, max_len, chunk, resident=others),
        P.decode_program(
            "grpo_decode", config, mesh, num_slots, max_len, sampler.steps_per_sync, resident=others
        ),
    ]


def _config(fn, name: str, cls, scope: str | None = None):
    """The config a gin-configured `fn` receives as `name`: its bound reference, else the
    class's gin-bound instance in `scope` (what `fn` builds when given none)."""
    try:
        ref = gin.query_parameter(f"{fn.__name__}.{name}")
    except ValueError:
        ref = None
    if isinstance(ref, gin.config.ConfigurableReference):
        return ref.scoped_configurable_fn()
    if ref is not None:
        return ref
    return scopes.configured(cls, scope) if scope else cls()


def _user_engine(config: ModelConfig, mesh, stage: str, default: str) -> list:
    """The model user simulator's weights and cache when `stage` plays one (a model of the
    policy's size: the user is fine-tuned from the agent checkpoint); its engine stays
    allocated beside the policy's."""
    try:
        user = gin.query_parameter(f"{stage}.user")
    except ValueError:
        user = default
    if user not in ("model", "untrained"):
        return []
    sampler = scopes.configured(SamplerConfig, scopes.USER)
    return list(P.sampler_arrays(config, mesh, sampler.num_slots, sampler.max_len)[1:])


def eval_programs(config: ModelConfig, devices: list) -> list[P.Program]:
    """The evaluation sampler's prefill and decode (`evaluate_checkpoint`'s engine), with the
    model user's engine resident when the evaluation plays one."""
    from eigen_jax.eval.evaluate import evaluate_checkpoint

    mesh = make_mesh(gin_arg(evaluate_checkpoint, "mesh_shape"), devices, "evaluate_checkpoint")
    sampler = _config(evaluate_checkpoint, "sampler", SamplerConfig, scopes.EVAL)
    num_slots, max_len = sampler.num_slots, sampler.max_len
    user = _user_engine(config, mesh, "eval_stage", "reference")
    chunk = min(max_len, sampler.max_prefill_len)
    return [
        P.prefill_program("eval_prefill", config, mesh, num_slots, max_len, chunk, resident=user),
        P.decode_program(
            "eval_decode", config, mesh, num_slots, max_len, sampler.steps_per_sync, resident=user
        ),
    ]
