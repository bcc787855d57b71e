"""The metrics writer: every metric to metrics.jsonl / TensorBoard, a concise console line, and
the same tags and steps to Weights & Biases when asked, from process 0 only."""

import json

import jax
import numpy as np
from absl import logging

from eigen_jax.train.metrics import MetricsWriter, WandbSettings, mirror_to_wandb
from tests.fixtures.fake_wandb import use_fake_wandb


def test_console_line_shows_only_its_keys_and_the_log_keeps_everything(tmp_path, monkeypatch):
    lines = []
    monkeypatch.setattr(logging, "info", lambda fmt, *args: lines.append(fmt % args))
    writer = MetricsWriter(
        tmp_path, prefix="grpo/", console_every=2, console_keys=("reward_mean", "loss", "absent")
    )
    for step in (1, 2):
        writer.write(step, {"reward_mean": 0.25 * step, "loss": 1.5, "clip_fraction": 0.0})
    writer.close()
    assert len(lines) == 1 and lines[0].startswith("[grpo] step 2")
    assert lines[0].endswith("reward_mean=0.5 loss=1.5")
    logged = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert logged[1] == {"step": 2, "reward_mean": 0.5, "loss": 1.5, "clip_fraction": 0.0}
    assert MetricsWriter(tmp_path / "b", write=False).summary({"b": 1.0, "a": 2.0}) == "a=2 b=1"


def test_wandb_mirror_logs_what_metrics_jsonl_holds_from_process_0_only(tmp_path, monkeypatch):
    wandb = use_fake_wandb(monkeypatch)
    mirror_to_wandb(WandbSettings(project="eigen", mode="offline", group="run1"))
    try:
        writer = MetricsWriter(tmp_path / "grpo", prefix="grpo/", console_every=0)
        for step, loss in ((1, 2.0), (2, 1.5), (3, 1.25)):
            writer.write(step, {"loss": loss, "reward_mean": np.float32(step / 4)})
        writer.close()
        monkeypatch.setattr(jax, "process_index", lambda: 1)  # another process of the same run
        other = MetricsWriter(tmp_path / "other", prefix="grpo/", console_every=0)
        other.write(1, {"loss": 1.0})
        other.close()
    finally:
        mirror_to_wandb(None)
    (run,) = wandb.runs  # none from process 1
    assert {k: run.init[k] for k in ("project", "mode", "group", "name")} == {
        "project": "eigen",
        "mode": "offline",
        "group": "run1",
        "name": "grpo",
    }
    lines = [json.loads(x) for x in (tmp_path / "grpo" / "metrics.jsonl").read_text().splitlines()]
    expected = [({f"grpo/{k}": v for k, v in d.items() if k != "step"}, d["step"]) for d in lines]
    assert run.logged == expected and len(expected) == 3
    assert run.finished
    assert not (tmp_path / "other").exists()
