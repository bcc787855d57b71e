"""The metrics writer: every metric to metrics.jsonl / TensorBoard, a concise console line."""

import json

from absl import logging

from eigen_jax.train.metrics import MetricsWriter


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
