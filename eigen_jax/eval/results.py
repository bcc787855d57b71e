"""Evaluation results: a durable per-trial log (resume skips finished trials) and the summary.

`trials.jsonl` gets one line per finished trial (task, trial index, reward, finish reason, turns,
optional second opinion from another evaluator) the moment it is scored, fsynced, so a crashed
evaluation resumes where it stopped. `summarize` turns it into `results.json` (per task: every
trial; per domain: the pass^k / pass@k table), a printed table and a PNG plot.

A log belongs to one evaluated setup (checkpoint weights, domain, sampling, user): its `identity`
sits beside it in `trials.identity.json`. Resuming with a different identity (say, GRPO re-ran
and re-exported the checkpoint) must not mix the old trials into the new score, so the old log is
moved aside (`trials.jsonl.stale-N`, nothing is deleted) and the evaluation starts afresh.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from absl import logging

from eigen_jax.eval.passk import pass_table


class TrialLog:
    def __init__(self, path: str | Path, identity: dict[str, Any] | None = None):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.trials: dict[tuple[str, int], dict[str, Any]] = {}
        if identity is not None:
            self._claim(json.loads(json.dumps(identity, sort_keys=True, default=str)))
        if self.path.exists():
            for line in self.path.read_text().splitlines():
                if line.strip():
                    try:
                        t = json.loads(line)
                    except json.JSONDecodeError:
                        continue  # the torn last line of a crashed run
                    self.trials[(t["task_id"], int(t["trial"]))] = t

    def _claim(self, identity: dict[str, Any]) -> None:
        """Resume only a log of the same setup; move a different setup's log aside."""
        id_path = self.path.with_name(self.path.stem + ".identity.json")
        old = json.loads(id_path.read_text()) if id_path.exists() else None
        if old is not None and old != identity and self.path.exists():
            n = 0
            while self.path.with_name(f"{self.path.name}.stale-{n}").exists():
                n += 1
            stale = self.path.with_name(f"{self.path.name}.stale-{n}")
            self.path.rename(stale)
            id_path.rename(stale.with_name(stale.name + ".identity.json"))
            changed = sorted(k for k in set(old) | set(identity) if old.get(k) != identity.get(k))
            logging.warning(
                "%s was written for another setup (changed: %s); moved it to %s and "
                "starting afresh",
                self.path,
                ", ".join(changed),
                stale,
            )
        # a log without an identity (older runs) is adopted as is
        id_path.write_text(json.dumps(identity, indent=1, sort_keys=True))

    def done(self, task_id: str, trial: int) -> bool:
        return (task_id, trial) in self.trials

    def add(self, trials: Iterable[dict[str, Any]]) -> None:
        with open(self.path, "a") as f:
            for t in trials:
                f.write(json.dumps(t) + "\n")
                self.trials[(t["task_id"], int(t["trial"]))] = t
            f.flush()
            os.fsync(f.fileno())


def summarize(
    log: TrialLog,
    domain: str,
    num_trials: int,
    meta: dict[str, Any] | None = None,
    task_ids: Iterable[str] | None = None,
) -> dict[str, Any]:
    """The summary of trials `< num_trials` of `task_ids` (default: every task in the log)."""
    keep = None if task_ids is None else set(task_ids)
    per_task: dict[str, list[dict[str, Any]]] = {}
    for (task_id, _), t in sorted(log.trials.items()):
        if t["trial"] < num_trials and (keep is None or task_id in keep):
            per_task.setdefault(task_id, []).append(t)
    rewards = {k: [float(t["reward"]) for t in v] for k, v in per_task.items()}
    table = pass_table(rewards)
    finishes: dict[str, int] = {}
    for v in per_task.values():
        for t in v:
            finishes[t["finish_reason"]] = finishes.get(t["finish_reason"], 0) + 1
    result = {
        "domain": domain,
        "num_tasks": len(per_task),
        "num_trials": num_trials,
        "pass^k": table["pass^k"],
        "pass@k": table["pass@k"],
        "finish_reasons": finishes,
        "tasks": per_task,
        **(meta or {}),
    }
    second = [
        (t["reward"], t["second_opinion"])
        for v in per_task.values()
        for t in v
        if t.get("second_opinion") is not None
    ]
    if second:
        result["evaluator_agreement"] = {
            "trials": len(second),
            "agree": sum(a == b for a, b in second),
            "rate": sum(a == b for a, b in second) / len(second),
        }
    return result


def format_table(results: dict[str, dict[str, Any]]) -> str:
    """Rows: one per (name, domain); columns pass^1..k and pass@k_max."""
    lines = []
    for name, r in results.items():
        ks = sorted(int(k) for k in r["pass^k"])
        head = " ".join(f"pass^{k:<3}" for k in ks) + f" pass@{ks[-1]}"
        vals = (
            " ".join(f"{100 * r['pass^k'][k]:6.1f}" for k in ks)
            + f" {100 * r['pass@k'][ks[-1]]:6.1f}"
        )
        if not lines:
            lines.append(f"{'run':24s} {'domain':12s} {'tasks':>5s} {head}")
        lines.append(f"{name:24s} {r['domain']:12s} {r['num_tasks']:5d} {vals}")
    return "\n".join(lines)


def plot_pass_k(results: dict[str, dict[str, Any]], path: str | Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    for name, r in results.items():
        ks = sorted(int(k) for k in r["pass^k"])
        ax.plot(ks, [100 * r["pass^k"][k] for k in ks], marker="o", label=name)
    ax.set_xlabel("k")
    ax.set_ylabel("pass^k (%)")
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    from eigen_jax import paths

    with paths.resolve(path).open("wb") as f:  # any epath scheme (gs://)
        fig.savefig(f, format="png", dpi=120)
    plt.close(fig)


def write_results(out_dir: str | Path, name: str, result: dict[str, Any]) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(result, indent=1, default=str))
    plot_pass_k({name: result}, out / "pass_k.png")
