"""launch/train.py end to end on the tiny SFT config: loss drops, export loads, SIGKILL + resume.

The resume test kills the trainer with SIGKILL mid-run and restarts it: the loss trace from the
restored step on must equal the uninterrupted run's bit for bit (same mesh, CPU).
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tests.fixtures.fake_wandb import install_fake_wandb, read_fake_wandb_log

REPO = Path(__file__).resolve().parents[2]
TRAIN = [sys.executable, str(REPO / "launch" / "train.py"), "--gin_file", "gin/test/sft_tiny.gin"]
# One CPU device: sharded equivalence is tested in tests/eigen_jax; here speed matters.
ENV = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")


def run_train(workdir, *bindings, wait=True):
    cmd = TRAIN + ["--workdir", str(workdir)] + [f"--gin_bindings={b}" for b in bindings]
    if not wait:
        return subprocess.Popen(
            cmd, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
    out = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    return out


def trace(workdir, name="sft_agent"):
    by_step = {}
    for line in (Path(workdir) / name / "tb" / "metrics.jsonl").read_text().splitlines():
        d = json.loads(line)
        if "loss" in d:
            by_step[d["step"]] = d["loss"]  # a resumed run overwrites the killed run's steps
    return by_step


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    """Data (reference backend → TFDS) and tokenizer, built once through the pipeline itself."""
    wd = tmp_path_factory.mktemp("prepared")
    run_train(wd, "run_pipeline.stages=[@reference_data_stage, @tokenizer_stage]")
    assert (wd / "tokenizer" / "tokenizer.json").exists()
    return wd


def clone(prepared, dst):
    shutil.copytree(prepared, dst)
    return dst


def test_unknown_gin_binding_fails_before_compute(tmp_path):
    cmd = TRAIN + ["--workdir", str(tmp_path), "--gin_bindings=run_sft.not_a_knob=3"]
    out = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert "not_a_knob" in out.stderr
    assert not (tmp_path / "data").exists()


def test_wandb_flag_without_wandb_installed_is_one_line_before_any_work(tmp_path):
    not_installed = tmp_path / "site"
    not_installed.mkdir()
    (not_installed / "wandb.py").write_text("raise ImportError(\"No module named 'wandb'\")\n")
    cmd = TRAIN + ["--workdir", str(tmp_path / "wd"), "--wandb_project", "eigen"]
    env = dict(ENV, PYTHONPATH=os.pathsep.join([str(not_installed), str(REPO)]))
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines() == [
        "--wandb_project needs the wandb package: pip install 'eigen-jax[wandb]'"
    ]
    assert not (tmp_path / "wd").exists()


def test_wandb_flag_mirrors_the_stage_metrics_jsonl(prepared, tmp_path):
    """Through the launcher: one W&B run for the agent-SFT stage, in the run folder's group, with
    exactly the steps and (prefixed) values of its metrics.jsonl, then finished."""
    wd = clone(prepared, tmp_path / "run1")
    fake, log = install_fake_wandb(tmp_path / "fake"), tmp_path / "wandb_calls.jsonl"
    bindings = [
        "run_pipeline.stages=[@reference_data_stage, @tokenizer_stage, @agent/sft_stage]",
        "run_sft.num_steps=3",
        "run_sft.eval_every=100",
        "run_sft.export_hf=False",
    ]
    cmd = TRAIN + ["--workdir", str(wd), "--wandb_project", "eigen", "--wandb_mode", "offline"]
    cmd += [f"--gin_bindings={b}" for b in bindings]
    env = dict(ENV, PYTHONPATH=os.pathsep.join([str(fake), str(REPO)]), FAKE_WANDB_LOG=str(log))
    out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert out.returncode == 0, out.stderr[-4000:]
    calls = read_fake_wandb_log(log)
    assert [c["call"] for c in calls] == ["init", "log", "log", "log", "finish"]
    init = calls[0]["kwargs"]
    assert (init["project"], init["mode"], init["group"], init["name"]) == (
        "eigen",
        "offline",
        "run1",
        "sft_agent",
    )
    lines = [
        json.loads(x) for x in (wd / "sft_agent" / "tb" / "metrics.jsonl").read_text().splitlines()
    ]
    expected = [
        {"data": {f"sft_agent/{k}": v for k, v in d.items() if k != "step"}, "step": d["step"]}
        for d in lines
    ]
    assert [{"data": c["data"], "step": c["step"]} for c in calls[1:4]] == expected
    assert [d["step"] for d in lines] == [1, 2, 3]


@pytest.mark.slow  # ~2 min of training here; `make test-slow`
def test_sigkill_and_resume_reproduce_the_loss_trace(prepared, tmp_path):
    agent_only = [
        "run_pipeline.stages=[@reference_data_stage, @tokenizer_stage, @agent/sft_stage]",
        "run_sft.num_steps=12",
        "run_sft.checkpoint_every=4",
        "run_sft.eval_every=100",
        "run_sft.export_hf=False",
    ]
    ref = clone(prepared, tmp_path / "ref")
    run_train(ref, *agent_only)
    expected = trace(ref)
    assert sorted(expected) == list(range(1, 13))

    wd = clone(prepared, tmp_path / "killed")
    proc = run_train(wd, *agent_only, wait=False)
    metrics = wd / "sft_agent" / "tb" / "metrics.jsonl"
    deadline = time.time() + 600
    while time.time() < deadline:
        if metrics.exists() and len(trace(wd)) >= 7:
            break
        if proc.poll() is not None:
            pytest.fail(f"trainer exited early: {proc.stderr.read()[-2000:]}")
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    killed_at = max(trace(wd))
    assert killed_at < 12, "the run finished before it could be killed"
    run_train(wd, *agent_only)
    resumed = trace(wd)
    assert sorted(resumed) == list(range(1, 13))
    for step in range(1, 13):
        assert resumed[step] == expected[step], (step, resumed[step], expected[step])


@pytest.mark.slow  # ~2 min of training here; `make test-slow`
def test_user_sft_starts_from_the_agent_checkpoint(prepared, tmp_path):
    """`user/sft_stage.init_from='agent'`: the user model's first loss (before its first update)
    is the trained agent's on user turns, far below a random init's ln(vocab) = 6.24. Re-running
    the finished pipeline keeps each SFT stage's result (held-out loss trace, seconds)."""
    warm = clone(prepared, tmp_path / "warm")
    args = [
        "run_pipeline.stages=[@reference_data_stage, @tokenizer_stage, @agent/sft_stage, "
        "@user/sft_stage]",
        "run_sft.eval_every=100",
        "agent/run_sft.num_steps=30",
        "user/run_sft.num_steps=1",
        "user/sft_stage.init_from='agent'",
    ]
    run_train(warm, *args)
    agent_last, user_first = trace(warm, "sft_agent")[30], trace(warm, "sft_user")[1]
    assert user_first < np.log(512) - 1.5, (user_first, agent_last)
    first = json.loads((warm / "sft_agent" / "result.json").read_text())
    assert [s for s, _ in first["eval_loss"]] == [0, 30]
    run_train(warm, *args)
    again = json.loads((warm / "sft_agent" / "result.json").read_text())
    assert again["eval_loss"] == first["eval_loss"] and again["steps"] == 30
    assert again["seconds"] == pytest.approx(first["seconds"], abs=5.0)  # not reset to ~0


def test_init_from_needs_that_stage_first():
    from launch.pipeline import RunContext, sft_stage

    with pytest.raises(ValueError, match="needs the agent-SFT stage before it"):
        sft_stage(
            RunContext("/tmp/x", data_dir="d", tokenizer_dir="t"),
            objective="user",
            init_from="agent",
            run=lambda **kw: {},
        )


def test_moe_agent_and_user_sft_through_the_launcher(prepared, tmp_path):
    """A Qwen3-MoE model through `launch/train.py`: agent SFT with the load-balancing loss on
    (its loss falls, the router's expert load is logged), user SFT from that checkpoint, and the
    export is a Qwen3-MoE checkpoint transformers loads."""
    wd = clone(prepared, tmp_path / "moe")
    run_train(
        wd,
        "run_pipeline.stages=[@reference_data_stage, @tokenizer_stage, "
        "@agent/sft_stage, @user/sft_stage]",
        "init_model.preset='tiny-qwen3-moe'",
        "run_sft.router_aux_loss_coef=0.01",
        "run_sft.eval_every=100",
        "agent/run_sft.num_steps=12",
        "user/run_sft.num_steps=2",
        "user/sft_stage.init_from='agent'",
    )
    losses = trace(wd, "sft_agent")
    assert losses[12] < losses[1] - 0.5, losses
    rows = [
        json.loads(line)
        for line in (wd / "sft_agent" / "tb" / "metrics.jsonl").read_text().splitlines()
    ]
    loads = [r["router/max_load"] for r in rows if "router/max_load" in r]
    assert len(loads) == 12 and all(x >= 1.0 for x in loads)
    config = json.loads((wd / "sft_user" / "hf" / "config.json").read_text())
    assert config["model_type"] == "qwen3_moe" and config["num_experts"] == 8
    from transformers import AutoModelForCausalLM

    assert (
        type(AutoModelForCausalLM.from_pretrained(wd / "sft_user" / "hf")).__name__
        == "Qwen3MoeForCausalLM"
    )


@pytest.mark.parametrize(
    "binding,message",
    [
        ("run_sft.num_steps=-1", "run_sft.num_steps must be >= 1, got -1"),
        ("run_sft.batch_size=0", "run_sft.batch_size must be >= 1, got 0"),
    ],
)
def test_out_of_range_knob_is_one_line_and_nonzero(prepared, tmp_path, binding, message):
    wd = clone(prepared, tmp_path / "bad")
    stages = "run_pipeline.stages=[@reference_data_stage, @tokenizer_stage, @agent/sft_stage]"
    cmd = TRAIN + ["--workdir", str(wd), f"--gin_bindings={stages}", f"--gin_bindings={binding}"]
    out = subprocess.run(cmd, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert out.returncode != 0
    assert out.stderr.strip().splitlines()[-1] == f"error: {message}", out.stderr[-2000:]
    assert not (wd / "sft_agent" / "hf").exists()


def test_lora_agent_and_user_sft_lower_held_out_loss(prepared, tmp_path):
    """`run_sft.lora = @LoraConfig()`: agent and user SFT train rank-16 adapters on the frozen
    base; each stage's held-out loss falls, each writes its PEFT adapter beside the merged
    checkpoint, and the merged checkpoint is the frozen base plus that adapter."""
    from eigen_jax import models
    from eigen_jax.models import lora_io

    wd = clone(prepared, tmp_path / "lora")
    run_train(
        wd,
        "run_pipeline.stages=[@reference_data_stage, @tokenizer_stage, "
        "@agent/sft_stage, @user/sft_stage]",
        "run_sft.lora=@LoraConfig()",
        "LoraConfig.rank=16",
        "LoraConfig.alpha=32.0",
        "run_sft.eval_every=100",
        "make_schedule.learning_rate=1e-2",  # adapters take a larger step than weights
        "user/sft_stage.init_from='agent'",
    )
    for name in ("sft_agent", "sft_user"):
        result = json.loads((wd / name / "result.json").read_text())
        (_, first), (_, last) = result["eval_loss"][0], result["eval_loss"][-1]
        assert last < first - 0.2, (name, result["eval_loss"])  # measured: -0.59, -0.32
        adapter = json.loads((wd / name / "adapter" / "adapter_config.json").read_text())
        assert adapter["r"] == 16 and adapter["lora_alpha"] == 32.0
    # The user stage started from the agent's merged checkpoint: its frozen base. Re-adding
    # the user adapter to that base gives the user's merged checkpoint.
    base, _ = models.from_pretrained(str(wd / "sft_agent" / "hf"))
    merged, _ = models.from_pretrained(str(wd / "sft_user" / "hf"))
    again = lora_io.merge_adapters(lora_io.load_adapter(base, str(wd / "sft_user" / "adapter")))
    ids = np.arange(1, 33, dtype=np.int32)[None]
    np.testing.assert_allclose(np.asarray(again(ids)), np.asarray(merged(ids)), atol=1e-5)
    assert np.abs(np.asarray(base(ids)) - np.asarray(merged(ids))).max() > 1e-3
