"""`launch/compile.py` and the programs behind it, compiled for a 4-chip v5e slice on the CPU.

References: XLA's own `memory_analysis()` of the same program compiled independently here, and
the per-chip shard sizes of the program's inputs (what its argument buffers must hold).
"""

import json
import os
import subprocess
import sys

import gin
import jax
import pytest

from eigen_jax.aot import plan
from eigen_jax.aot import programs as P
from eigen_jax.aot.report import compile_program
from eigen_jax.aot.topology import parse_topology

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(__file__))))
GIN = "gin/test/compile_tiny.gin"


def _compile_cli(tmp_path, *args):
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    proc = subprocess.run(
        [
            sys.executable,
            "launch/compile.py",
            "--topology",
            "v5e-4",
            "--output_dir",
            str(tmp_path),
            *args,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    return proc, tmp_path / "compile_report.json"


@pytest.fixture(scope="module")
def cli_report(tmp_path_factory):
    proc, path = _compile_cli(tmp_path_factory.mktemp("compile"), "--gin_file", GIN)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc, json.loads(path.read_text())


def test_every_program_of_the_run_compiles_and_fits(cli_report):
    proc, report = cli_report
    assert report["topology"] == "v5e-4" and report["chips"] == 4
    assert report["hbm_bytes_per_chip"] == 16 * 2**30
    names = [p["name"] for p in report["programs"]]
    assert names == ["sft_agent+user", "grpo_step", "grpo_prefill", "grpo_decode"]
    for p in report["programs"]:
        assert p["fits"] and 0 < p["peak_bytes_per_chip"] < report["hbm_bytes_per_chip"]
        assert p["compile_seconds"] > 0 and p["roofline_step_seconds"] >= 0
        assert p["name"] in proc.stdout
    train = {p["name"]: p for p in report["programs"]}
    assert (
        train["sft_agent+user"]["flops_per_chip"] > 0 and train["grpo_step"]["flops_per_chip"] > 0
    )
    assert train["grpo_step"]["resident_bytes"] > 0  # the sampler's weights and caches


def test_report_bytes_are_xlas_own(cli_report):
    """The SFT program rebuilt and compiled here: same memory analysis as the CLI reported, and
    its argument bytes are the per-chip shards of the train state and batch."""
    _, report = cli_report
    import launch.configurables  # noqa: F401 - registers what the gin file binds

    gin.clear_config()
    gin.parse_config_file(os.path.join(REPO, GIN))
    try:
        devices = parse_topology("v5e-4").devices()
        program = plan.programs_from_gin(devices, only=["sft"])[0]
    finally:
        gin.clear_config()
    with jax.set_mesh(program.mesh):
        compiled = program.fn.lower(*program.args).compile()
    mem = compiled.memory_analysis()
    cli = report["programs"][0]
    assert cli["argument_bytes"] == mem.argument_size_in_bytes
    assert cli["temp_bytes"] == mem.temp_size_in_bytes
    assert cli["output_bytes"] == mem.output_size_in_bytes
    assert cli["alias_bytes"] == mem.alias_size_in_bytes
    assert cli["peak_bytes_per_chip"] == (
        mem.argument_size_in_bytes
        + mem.output_size_in_bytes
        - mem.alias_size_in_bytes
        + mem.temp_size_in_bytes
    )
    # TPU layouts pad minor dimensions to (8, 128) tiles (this tiny model's 4 heads, 16-wide
    # head dims), so the argument buffers hold at least the shards, never less.
    assert mem.argument_size_in_bytes >= P.per_chip_bytes(program.args)
    report_again, _ = compile_program(program, parse_topology("v5e-4").chip)
    assert report_again.temp_bytes == mem.temp_size_in_bytes


def test_oversized_program_exits_naming_it(tmp_path):
    proc, path = _compile_cli(
        tmp_path,
        "--gin_file",
        GIN,
        "--programs",
        "sft",
        "--gin_bindings",
        "run_sft.seq_len = 16384",
        "--gin_bindings",
        "run_sft.batch_size = 64",
        "--gin_bindings",
        "init_model.config_overrides = {'attention_block': 0, 'attention_impl': 'xla'}",
    )
    assert proc.returncode != 0
    last = proc.stderr.strip().splitlines()[-1]
    assert "sft_agent+user does not fit" in last and "16.00 GiB HBM of a v5e chip" in last
    refused = json.loads(path.read_text())["programs"][0]  # the report is still written
    assert not refused["fits"] and "RESOURCE_EXHAUSTED" in refused["error"]
    assert refused["temp_bytes"] > 16 * 2**30


@pytest.mark.parametrize(
    "args,message",
    [
        (["--topology", "v9-8"], "unknown topology 'v9-8'"),
        (["--gin_bindings", "run_sft.mesh_shape = (1, 8, 1)"], "run_sft.mesh_shape (1, 8, 1)"),
        (["--gin_bindings", "init_model.preset = None"], "name no model size"),
    ],
)
def test_bad_targets_fail_before_compiling(tmp_path, args, message):
    proc, path = _compile_cli(tmp_path, "--gin_file", GIN, *args)
    assert proc.returncode != 0
    assert message in proc.stderr.strip().splitlines()[-1]
    assert "compiling" not in proc.stderr and not path.exists()


def test_moe_model_compiles_with_grouped_matmuls_for_tpu(tmp_path):
    """The tiny MoE's SFT step and decode compile for the TPU slice: experts sharded over fsdp
    and gathered inside the shard_map, tokens through `ragged_dot` (what "auto" picks there)."""
    proc, path = _compile_cli(
        tmp_path,
        "--gin_file",
        GIN,
        "--programs",
        "sft,grpo_decode",
        "--gin_bindings",
        "init_model.preset = 'tiny-qwen3-moe'",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(path.read_text())
    assert [p["name"] for p in report["programs"]] == ["sft_agent+user", "grpo_decode"]
    assert all(p["fits"] for p in report["programs"])
    import jax.numpy as jnp
    from flax import nnx

    from eigen_jax import sharding
    from eigen_jax.models import get_config, moe

    config = get_config("tiny-qwen3-moe", dtype="bfloat16")
    graphdef, state = nnx.split(nnx.eval_shape(lambda: moe.SparseMoE(config, rngs=nnx.Rngs(0))))
    mesh = sharding.make_mesh((1, 4, 1), devices=parse_topology("v5e-4").devices())
    x = jax.ShapeDtypeStruct((4, 128, config.hidden_size), jnp.bfloat16)
    with jax.set_mesh(mesh):
        lowered = jax.jit(lambda s, x: nnx.merge(graphdef, s)(x, jnp.ones(x.shape[:2]))[0]).lower(
            state, x
        )
    assert "ragged_dot" in lowered.as_text()


def test_lora_programs_compile_with_the_base_as_an_argument(cli_report, tmp_path):
    """`run_sft.lora` / `run_grpo.lora`: the steps compile with the adapters (and their
    moments) as the state and the frozen base as an argument: fewer argument bytes than the
    full-parameter step's weights + two moments."""
    proc, path = _compile_cli(
        tmp_path,
        "--gin_file",
        GIN,
        "--programs",
        "sft,grpo_step",
        "--gin_bindings=run_sft.lora=@LoraConfig()",
        "--gin_bindings=run_grpo.lora=@LoraConfig()",
        "--gin_bindings=LoraConfig.rank=2",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lora = {p["name"]: p for p in json.loads(path.read_text())["programs"]}
    full = {p["name"]: p for p in cli_report[1]["programs"]}
    assert sorted(lora) == ["grpo_step", "sft_agent+user"]
    for name in lora:
        assert lora[name]["fits"]
        assert lora[name]["argument_bytes"] < 0.8 * full[name]["argument_bytes"], name
