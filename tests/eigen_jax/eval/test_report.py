"""The run report: pass^k intervals, finish reasons per stage, plots and the Markdown page."""

import json

import numpy as np
import pytest

from eigen_jax.eval.compare import paired_difference
from eigen_jax.eval.report import finish_reasons, pass_k_intervals, write_report


def result(rewards: dict[str, list[float]], finish: dict[str, int] | None = None) -> dict:
    from eigen_jax.eval.passk import pass_table

    table = pass_table(rewards)
    return {
        "domain": "outfitter",
        "num_tasks": len(rewards),
        "num_trials": 2,
        "pass^k": table["pass^k"],
        "pass@k": table["pass@k"],
        "finish_reasons": finish or {"done": 2 * len(rewards)},
        "tasks": {
            t: [{"trial": i, "reward": r, "finish_reason": "done"} for i, r in enumerate(rs)]
            for t, rs in rewards.items()
        },
    }


REWARDS = {f"t{i}": [float(i % 2), float(i % 3 == 0)] for i in range(12)}


def test_interval_is_the_bootstrap_of_the_mean_over_tasks():
    """k=1 against an independent route: the paired bootstrap of (run − an all-zero run) draws
    the same task resamples and must give the same interval."""
    r = result(REWARDS)
    zero = result({t: [0.0, 0.0] for t in REWARDS})
    ci = pass_k_intervals(r, num_resamples=500, seed=3)
    want = paired_difference(zero, r, k=1, num_resamples=500, seed=3)["ci"]
    np.testing.assert_allclose(ci[1], want)
    for k, (lo, hi) in ci.items():
        assert lo <= r["pass^k"][k] <= hi
    flat = pass_k_intervals(result({t: [1.0, 1.0] for t in REWARDS}))
    assert flat == {1: [1.0, 1.0], 2: [1.0, 1.0]}


def test_report_page_has_intervals_plots_finish_reasons_and_config(tmp_path):
    evals = {
        "random": result({t: [0.0, 0.0] for t in REWARDS}, {"max_errors": 24}),
        "sft": result(REWARDS, {"done": 18, "max_steps": 6}),
    }
    for name, r in evals.items():
        (tmp_path / "eval" / name).mkdir(parents=True)
        (tmp_path / "eval" / name / "results.json").write_text(json.dumps(r))
    (tmp_path / "grpo" / "tb").mkdir(parents=True)
    rows = [
        {"step": 1, "episodes": 8, "finish_done": 0.25, "finish_max_errors": 0.75},
        {"step": 2, "episodes": 24, "finish_done": 0.5, "finish_max_errors": 0.5},
    ]
    (tmp_path / "grpo" / "tb" / "metrics.jsonl").write_text(
        "\n".join(json.dumps(r) for r in rows) + "\n"
    )
    (tmp_path / "config.gin").write_text("run_grpo.num_steps = 2\n")
    summaries = {n: {k: v for k, v in r.items() if k != "tasks"} for n, r in evals.items()}
    md = write_report(
        tmp_path,
        evals=summaries,
        runs={"grpo": {"reward_curve": [[1, 0.1], [2, 0.3]]}},
        timings={"eval": 1.0},
        compile_s={"eval": 0.5},
    ).read_text()
    assert "![pass^k](pass_k.png)" in md and "![reward curve](reward_curve.png)" in md
    assert (tmp_path / "pass_k.png").stat().st_size > 0
    assert "run_grpo.num_steps = 2" in md
    reasons = finish_reasons(tmp_path, summaries, {"grpo": {}})
    assert reasons["grpo"] == pytest.approx(
        {"done": (0.25 * 8 + 0.5 * 24) / 32, "max_errors": (0.75 * 8 + 0.5 * 24) / 32}
    )
    assert reasons["eval sft"] == pytest.approx({"done": 0.75, "max_steps": 0.25})
    report = json.loads((tmp_path / "report.json").read_text())
    assert set(report["pass_k_95ci"]) == {"random", "sft"}
    assert "| grpo | 0.44 | 0.56 | 0.00 |" in md  # done, max_errors, max_steps (not a grpo one)


def test_ablation_report_compares_every_variant_with_the_baseline(tmp_path):
    """The reproduction's table: each GRPO variant against SFT (not against the variant before
    it), with the same paired comparison `compare_table` gives for that pair alone, and one
    reward-curve line per GRPO run."""
    from eigen_jax.eval.compare import compare_table

    evals = {
        "sft": result(REWARDS),
        "grpo_sft_user": result({t: [1.0, 1.0] for t in REWARDS}),
        "grpo_base_user": result({t: [0.0, 1.0] for t in REWARDS}),
    }
    for name, r in evals.items():
        (tmp_path / "eval" / name).mkdir(parents=True)
        (tmp_path / "eval" / name / "results.json").write_text(json.dumps(r))
    summaries = {n: {k: v for k, v in r.items() if k != "tasks"} for n, r in evals.items()}
    curves = {"grpo_sft_user": [[1, 0.2], [2, 0.4]], "grpo_base_user": [[1, 0.1], [2, 0.1]]}
    md = write_report(
        tmp_path,
        evals=summaries,
        runs={n: {"reward_curve": c} for n, c in curves.items()},
        timings={},
        compile_s={},
        baseline="sft",
    ).read_text()
    report = json.loads((tmp_path / "report.json").read_text())
    pairs = [(c["baseline"], c["candidate"]) for c in report["comparisons"]]
    assert pairs == [("sft", "grpo_sft_user"), ("sft", "grpo_base_user")]
    assert report["comparisons"][1]["rows"] == json.loads(
        json.dumps(compare_table(evals["sft"], evals["grpo_base_user"]))
    )
    assert "### grpo_base_user vs sft" in md
    assert (tmp_path / "reward_curve.png").stat().st_size > 0
    with pytest.raises(ValueError, match="baseline 'random' was not evaluated"):
        write_report(
            tmp_path, evals=summaries, runs={}, timings={}, compile_s={}, baseline="random"
        )
