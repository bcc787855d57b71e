"""Deviceless TPU compile of Tunix's Qwen3 full-parameter SFT train step: per-chip HBM and
compile seconds, the peer of `launch/compile.py --programs sft` on the eigen-jax side.

Runs INSIDE the Tunix venv (`bench/peers/make_venv.sh`, plus `pip install "jax[tpu]==<its jax>"`
for a matching libtpu) and imports nothing of eigen-jax. libtpu compiles for a slice it is only
told about (`jax.experimental.topologies.get_topology_desc`), so this CPU-only machine builds the
real partitioned TPU executable and reads XLA's memory analysis of it; nothing runs.

What is compiled, all Tunix's own code:
  model      `tunix.models.qwen3.model.Qwen3` at `ModelConfig.qwen3_8b()` (untied, vocab 151936),
             bf16 compute (`dtype`), f32 params (`param_dtype`), remat `RematConfig.DECODER`
             (whole decoder layer under `nnx.remat`, nothing saved: full per-layer remat), built
             abstractly with `nnx.eval_shape` under the mesh (as `tunix.models.dummy_model_creator`
             does) -- no weights.
  sharding   Tunix's `ShardingConfig.get_default_sharding()` annotations, resolved with
             `nnx.get_named_sharding` on a mesh ('fsdp'=chips, 'tp'=1): FSDP over every chip; the
             batch on 'fsdp' (`TrainingConfig.data_sharding_axis`).
  step       `PeftTrainer._train_step` itself (Tunix's `_default_loss_fn` next-token cross-entropy
             under `nnx.value_and_grad`, `optax.global_norm`, `nnx.Optimizer.update`), with the
             same `gen_model_input_fn` as `tunix_bench.py` (positions + causal mask from the
             input mask), jitted as `PeftTrainer.jit_train_and_eval_step` does:
             `nnx.jit(train_step, donate_argnames=("optimizer",))` -- Tunix donates the optimizer
             state but not the params. Optimizer: clip_by_global_norm(1.0) + adamw (the
             `tunix_bench.py` chain); `nnx.Optimizer(model, tx, wrt=nnx.Param)` as PeftTrainer
             builds it.
  attention  `--attention flash` (default) = Tunix's `use_flash_attention=True` (Pallas splash,
             block 1024, causal); `--attention xla` = Tunix's default dense einsum softmax.

One patch, documented: Tunix's `qwen3.model.shard` skips its activation sharding constraints
when `jax.devices()[0].platform == 'cpu'`; on this machine that is always true (the TPU devices
are deviceless compile targets), so it is replaced by the same function minus that test --
what the constraints do on a real TPU. `--no-activation-constraints` keeps Tunix's CPU no-op.

    JAX_PLATFORMS=cpu python bench/peers/tunix_compile.py --topology-name v5p:2x4x4 \
        --batch 32 --seq 4096 --out /tmp/tunix_4096.json

peak_bytes_per_chip = argument + output - alias + temp (`compiled.memory_analysis()`), the
eigen-jax formula (`eigen_jax/aot/report.py`).
"""

from __future__ import annotations

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
# libtpu's machine-wide lock is for processes that own chips; a deviceless compile owns none.
os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")

import argparse
import importlib.metadata as md
import json
import time
import types

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

V5P_HBM_BYTES = 95 * 2**30
CHIP_CONFIG = {"v4": "megacore", "v5p": "megacore", "v5e": "default", "v6e": "default"}


def topology_devices(name: str) -> list:
    """`v5p:2x4x4` -> the slice's chips as deviceless devices (hosts of 2x2x1 chips)."""
    from jax.experimental import topologies

    kind, shape = name.split(":")
    dims = [int(s) for s in shape.split("x")]
    host = tuple(min(h, s) for h, s in zip((2, 2, 1), dims)) + (1,) * (3 - min(3, len(dims)))
    desc = topologies.get_topology_desc(
        platform="tpu",
        topology_name=name,
        chip_config_name=CHIP_CONFIG[kind],
        chips_per_host_bounds=host[:3],
        num_slices=1,
    )
    return list(desc.devices)


def patch_activation_constraints():
    """Tunix's `shard` without its `platform == 'cpu'` escape (see the module docstring)."""
    from jax.interpreters import pxla
    from tunix.models.qwen3 import model as qwen3

    def shard(x, s):
        mesh = pxla.thread_resources.env.physical_mesh
        if mesh.empty:
            return x
        return jax.lax.with_sharding_constraint(x, NamedSharding(mesh, P(*s)))

    qwen3.shard = shard


def model_config(args):
    from tunix.models.qwen3 import model as qwen3

    cfg = qwen3.ModelConfig.qwen3_8b()
    cfg.dtype = jnp.bfloat16
    cfg.param_dtype = jnp.float32
    cfg.remat_config = {
        "decoder": qwen3.RematConfig.DECODER,
        "block": qwen3.RematConfig.BLOCK,
        "none": qwen3.RematConfig.NONE,
    }[args.remat]
    cfg.use_flash_attention = args.attention == "flash"
    cfg.flash_attention_block_size = args.flash_block
    return cfg


def model_input(x):
    """`tunix_bench.py`'s gen_model_input_fn: right-padded ids -> positions + causal mask."""
    from tunix.generate import utils

    mask = x["input_mask"]
    return {
        "input_tokens": x["input_tokens"],
        "input_mask": mask,
        "positions": utils.build_positions_from_mask(mask),
        "attention_mask": utils.make_causal_attn_mask(mask, mask.shape[1]),
    }


def with_sharding(tree, mesh):
    """Abstract nnx state -> the same tree of ShapeDtypeStructs carrying Tunix's shardings."""
    shardings = nnx.get_named_sharding(tree, mesh)
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), tree, shardings
    )


def memory_of(compiled) -> dict:
    m = compiled.memory_analysis()
    out = {
        "argument_bytes": int(m.argument_size_in_bytes),
        "output_bytes": int(m.output_size_in_bytes),
        "alias_bytes": int(m.alias_size_in_bytes),
        "temp_bytes": int(m.temp_size_in_bytes),
    }
    out["peak_bytes_per_chip"] = (
        out["argument_bytes"] + out["output_bytes"] - out["alias_bytes"] + out["temp_bytes"]
    )
    return out


def versions() -> dict:
    out = {}
    for dist in ("google-tunix", "jax", "jaxlib", "libtpu", "flax", "optax"):
        try:
            out[dist] = md.version(dist)
        except md.PackageNotFoundError:
            out[dist] = None
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--topology-name", default="v5p:2x4x4")
    ap.add_argument("--batch", type=int, default=32, help="global sequences per step")
    ap.add_argument("--seq", type=int, default=4096)
    ap.add_argument("--tp", type=int, default=1, help="'tp' mesh axis; 'fsdp' takes the rest")
    ap.add_argument("--attention", choices=("flash", "xla"), default="flash")
    ap.add_argument("--flash-block", type=int, default=1024)
    ap.add_argument("--remat", choices=("decoder", "block", "none"), default="decoder")
    ap.add_argument(
        "--no-activation-constraints",
        action="store_true",
        help="keep Tunix's CPU no-op `shard` (no activation sharding constraints)",
    )
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)

    from tunix.models.qwen3 import model as qwen3
    from tunix.sft import peft_trainer

    if not args.no_activation_constraints:
        patch_activation_constraints()
    devices = topology_devices(args.topology_name)
    n = len(devices)
    mesh = jax.make_mesh(
        (n // args.tp, args.tp),
        ("fsdp", "tp"),
        axis_types=(jax.sharding.AxisType.Auto,) * 2,
        devices=devices,
    )
    cfg = model_config(args)
    tx = optax.chain(
        optax.clip_by_global_norm(1.0), optax.adamw(1e-5, b1=0.9, b2=0.95, weight_decay=0.01)
    )

    def build():
        model = qwen3.Qwen3(cfg, rngs=nnx.Rngs(params=0))
        return model, nnx.Optimizer(model, tx, wrt=nnx.Param)

    # PeftTrainer._train_step, bound to a stand-in for the trainer's four fields it reads.
    trainer = types.SimpleNamespace(
        loss_fn=peft_trainer._default_loss_fn,
        gen_model_input_fn=model_input,
        _lora_enabled=False,
        _has_aux=False,
    )
    train_step = nnx.jit(
        lambda model, optimizer, inputs: peft_trainer.PeftTrainer._train_step(
            trainer, model, optimizer, inputs
        ),
        donate_argnames=("optimizer",),
    )

    data = NamedSharding(mesh, P("fsdp"))  # TrainingConfig.data_sharding_axis = ("fsdp",)
    inputs = {
        "input_tokens": jax.ShapeDtypeStruct((args.batch, args.seq), jnp.int32, sharding=data),
        "input_mask": jax.ShapeDtypeStruct((args.batch, args.seq), jnp.bool_, sharding=data),
    }

    t0 = time.perf_counter()
    with mesh:
        abs_model, abs_opt = nnx.eval_shape(build)
        gdef_m, state_m = nnx.split(abs_model)
        gdef_o, state_o = nnx.split(abs_opt)
        model = nnx.merge(gdef_m, with_sharding(state_m, mesh))
        optimizer = nnx.merge(gdef_o, with_sharding(state_o, mesh))
        t1 = time.perf_counter()
        lowered = train_step.lower(model, optimizer, inputs)
        t2 = time.perf_counter()
        compiled = lowered.compile()
    t3 = time.perf_counter()

    mem = memory_of(compiled)
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    cost = cost or {}
    n_params = sum(x.size for x in jax.tree.leaves(state_m))
    report = {
        "side": "tunix",
        "topology": args.topology_name,
        "chips": n,
        "mesh": dict(zip(mesh.axis_names, mesh.axis_sizes)),
        "batch": args.batch,
        "seq": args.seq,
        "params": int(n_params),
        "dtype": "bfloat16",
        "param_dtype": "float32",
        "remat": args.remat,
        "attention": args.attention,
        "flash_block": args.flash_block,
        "activation_constraints": not args.no_activation_constraints,
        **mem,
        "compile_seconds": round(t3 - t0, 2),  # eval_shape + trace + lower + XLA compile
        "lower_seconds": round(t2 - t1, 2),
        "xla_compile_seconds": round(t3 - t2, 2),
        "fits_v5p_hbm": mem["peak_bytes_per_chip"] <= V5P_HBM_BYTES,
        "xla_flops_per_chip": float(cost.get("flops", 0.0)),
        "xla_bytes_accessed_per_chip": float(cost.get("bytes accessed", 0.0)),
        "versions": versions(),
    }
    gb = lambda b: f"{b / 2**30:7.2f}"
    print(
        f"{'program (GiB/chip)':<22} {'peak':>8} {'args':>8} {'out':>8} {'alias':>8} "
        f"{'temp':>8} {'compile s':>9}"
    )
    print(
        f"{'tunix_sft':<22} {gb(mem['peak_bytes_per_chip']):>8} "
        f"{gb(mem['argument_bytes']):>8} {gb(mem['output_bytes']):>8} "
        f"{gb(mem['alias_bytes']):>8} {gb(mem['temp_bytes']):>8} "
        f"{report['compile_seconds']:9.1f}"
    )
    with open(args.out, "w") as f:
        json.dump(report, f, indent=1)
    print(json.dumps({k: v for k, v in report.items() if k != "versions"}))
    print(json.dumps(report["versions"]))
    return report


if __name__ == "__main__":
    main()
