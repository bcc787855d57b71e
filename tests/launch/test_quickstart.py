"""The quickstart pipeline scaled down: every stage runs and leaves its artifact; the report and
the eval CLI work on what it produced; bad input fails with one clear line."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ENV = dict(os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")


def run(*args, check=True, timeout=1200):
    out = subprocess.run(
        [sys.executable, *args], cwd=REPO, env=ENV, capture_output=True, text=True, timeout=timeout
    )
    if check:
        assert out.returncode == 0, out.stderr[-4000:]
    return out


@pytest.fixture(scope="module")
def quickstart(tmp_path_factory):
    wd = tmp_path_factory.mktemp("quickstart")
    run("launch/train.py", "--gin_file", "gin/test/quickstart_tiny.gin", "--workdir", str(wd))
    return wd


def test_every_stage_leaves_its_artifact(quickstart):
    wd = quickstart
    assert list((wd / "data" / "tfds" / "eigen_dialogues").rglob("*.array_record*"))
    assert (wd / "tokenizer" / "tokenizer.json").exists()
    for stage in ("sft_agent", "sft_user", "grpo", "random_init"):
        assert (wd / stage / "hf" / "config.json").exists(), stage
    for name in ("random", "sft", "grpo"):
        res = json.loads((wd / "eval" / name / "results.json").read_text())
        assert res["num_tasks"] == 4 and set(res["pass^k"]) == {"1", "2"}
        assert sum(len(v) for v in res["tasks"].values()) == 8  # 4 tasks x 2 trials
    assert (wd / "pass_k.png").stat().st_size > 0 and (wd / "reward_curve.png").exists()


def test_report_structure(quickstart):
    report = json.loads((quickstart / "report.json").read_text())
    assert {"data", "tokenizer", "sft_agent", "sft_user", "grpo", "eval"} <= set(
        report["timings_s"]
    )
    assert set(report["compile_s"]) == set(report["timings_s"])
    for stage in ("sft_agent", "grpo", "eval"):  # each jits programs of its own
        assert 0 < report["compile_s"][stage] < report["timings_s"][stage], stage
    assert set(report["eval"]) == {"random", "sft", "grpo"}
    for stage in ("sft_agent", "sft_user"):
        losses = [loss for _, loss in report[stage]["eval_loss"]]
        assert losses[-1] < 0.7 * losses[0], (stage, losses)  # held-out loss falls a lot
    assert len(report["grpo"]["reward_curve"]) == 2
    pairs = [(c["baseline"], c["candidate"]) for c in report["comparisons"]]
    assert pairs == [("random", "sft"), ("sft", "grpo")]
    for c in report["comparisons"]:  # Δ pass^k recomputed from the two runs' own tables
        for row in c["rows"]:
            k = str(row["k"])
            want = (
                report["eval"][c["candidate"]]["pass^k"][k]
                - report["eval"][c["baseline"]]["pass^k"][k]
            )
            assert row["delta"] == pytest.approx(want) and row["tasks"] == 4
    md = (quickstart / "report.md").read_text()
    assert "pass^1" in md and "| grpo |" in md and "### grpo vs sft" in md


def test_eval_cli_on_the_grpo_checkpoint_and_resume(quickstart, tmp_path):
    args = [
        "launch/eval.py",
        "--checkpoint",
        str(quickstart / "grpo" / "hf"),
        "--max_tasks",
        "2",
        "--num_trials",
        "2",
        "--output_dir",
        str(tmp_path),
        "--gin_file",
        "gin/test/quickstart_tiny.gin",
    ]
    run(*args)
    res = json.loads((tmp_path / "results.json").read_text())
    assert res["num_tasks"] == 2 and res["num_trials"] == 2
    lines = (tmp_path / "trials.jsonl").read_text().splitlines()
    assert len(lines) == 4
    run(*args)  # resumed: every trial is already there, nothing is re-run
    assert len((tmp_path / "trials.jsonl").read_text().splitlines()) == 4
    grpo = tmp_path / "grpo_results.json"
    grpo.write_text((tmp_path / "results.json").read_text())
    args[2] = str(quickstart / "sft_agent" / "hf")  # other weights, same output_dir
    out = run(*args, "--baseline", str(grpo))  # must not resume the GRPO checkpoint's trials
    assert (tmp_path / "trials.jsonl.stale-0").read_text().splitlines() == lines
    assert len((tmp_path / "trials.jsonl").read_text().splitlines()) == 4
    sft = json.loads((tmp_path / "results.json").read_text())
    assert sft["checkpoint"] == args[2]
    rows = json.loads((tmp_path / "comparison.json").read_text())["rows"]
    base = json.loads(grpo.read_text())
    assert [r["k"] for r in rows] == [1, 2]
    for r in rows:
        k = str(r["k"])
        assert r["delta"] == pytest.approx(sft["pass^k"][k] - base["pass^k"][k])
    assert "| k | baseline | this run |" in out.stdout


@pytest.mark.parametrize(
    "args,needle",
    [
        (["--checkpoint", "/nonexistent"], "does not exist"),
        (["--checkpoint", "."], "has no config.json"),
        (["--agent_url", "http://127.0.0.1:9", "--domain", "no_such_domain"], "unknown domain"),
        (
            ["--agent_url", "http://127.0.0.1:9", "--baseline", "/nonexistent"],
            "no readable evaluation results",
        ),
    ],
)
def test_eval_bad_input_fails_with_one_line(tmp_path, args, needle):
    out = run("launch/eval.py", *args, "--output_dir", str(tmp_path), check=False, timeout=300)
    assert out.returncode != 0
    assert needle in out.stderr.strip().splitlines()[-1]


@pytest.mark.parametrize(
    "damage,needle",
    [
        ("config", "config.json is not valid JSON"),
        ("weights", "corrupt checkpoint: SafetensorError"),
        ("no_weights", "has no *.safetensors weights"),
    ],
)
def test_eval_corrupt_checkpoint_fails_with_one_line(quickstart, tmp_path, damage, needle):
    import shutil

    ckpt = tmp_path / "ckpt"
    shutil.copytree(quickstart / "grpo" / "hf", ckpt)
    weights = sorted(ckpt.glob("*.safetensors"))
    if damage == "config":
        (ckpt / "config.json").write_text("{not json")
    elif damage == "weights":
        data = weights[0].read_bytes()
        weights[0].write_bytes(data[: len(data) // 2])  # a copy cut off half-way
    else:
        for w in weights:
            w.unlink()
    out = run(
        "launch/eval.py",
        "--checkpoint",
        str(ckpt),
        "--output_dir",
        str(tmp_path / "o"),
        check=False,
        timeout=300,
    )
    assert out.returncode != 0
    last = out.stderr.strip().splitlines()[-1]
    assert needle in last and str(ckpt) in last
