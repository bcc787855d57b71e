"""Per-round generation report: acceptance, failure taxonomy, tokens, and a PNG of acceptance.

Why from the journal: the journal is the single source of truth (it survives crashes and merges
across workers), so a report recomputed from it is always consistent with what will be published;
token counts, which the journal does not hold, come from the workers' per-round usage markers.
"""

from __future__ import annotations

import collections
import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from data_agents.records import DialogueRecord


def summarize_round(
    records: Iterable[DialogueRecord],
    round_index: int,
    tokens: dict[str, int] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """Counts for one round: acceptance rate, failures by stage/category/attribution, tokens."""
    total = accepted = 0
    by_stage: collections.Counter = collections.Counter()
    by_category: collections.Counter = collections.Counter()
    by_attribution: collections.Counter = collections.Counter()
    for r in records:
        total += 1
        if r.status == "accepted":
            accepted += 1
            continue
        f = r.failure or {}
        by_stage[f.get("stage", "unknown")] += 1
        by_category[f"{f.get('stage', 'unknown')}/{f.get('category', 'unknown')}"] += 1
        by_attribution[f.get("attribution", "unknown")] += 1
    return {
        "round": round_index,
        "total": total,
        "accepted": accepted,
        "rejected": total - accepted,
        "acceptance_rate": accepted / total if total else 0.0,
        "failures_by_stage": dict(by_stage.most_common()),
        "failures_by_category": dict(by_category.most_common()),
        "failures_by_attribution": dict(by_attribution.most_common()),
        "tokens": dict(tokens or {}),
        **extra,
    }


def failures_of(records: Iterable[DialogueRecord]) -> list[dict[str, Any]]:
    return [r.failure for r in records if r.status == "rejected" and r.failure]


def plot_acceptance(rounds: list[dict[str, Any]], path: str | Path) -> None:
    """Acceptance rate by round (matplotlib Agg: no display needed); rolled-back rounds marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    xs = [r["round"] for r in rounds]
    ys = [100.0 * r["acceptance_rate"] for r in rounds]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(xs, ys, marker="o")
    for r, y in zip(rounds, ys):
        ax.annotate(
            f"{r['accepted']}/{r['total']}",
            (r["round"], y),
            textcoords="offset points",
            xytext=(0, 6),
            ha="center",
            fontsize=8,
        )
        if r.get("rolled_back"):
            ax.plot([r["round"]], [y], "rx", markersize=10)
    ax.set_xlabel("round")
    ax.set_ylabel("acceptance rate (%)")
    ax.set_ylim(-5, 105)
    ax.set_xticks(xs)
    ax.set_title("Accepted instances by round (x = rolled back)")
    fig.tight_layout()
    tmp = Path(path).with_name(f".{Path(path).name}.{os.getpid()}.tmp.png")
    fig.savefig(tmp)
    plt.close(fig)
    os.replace(tmp, path)


def write_report(out_dir: str | Path, rounds: list[dict[str, Any]], **meta: Any) -> dict[str, Any]:
    """Write `report.json` and `acceptance.png` under `out_dir`; returns the report dict."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    total = sum(r["total"] for r in rounds)
    accepted = sum(r["accepted"] for r in rounds)
    report = {
        "rounds": rounds,
        "total": total,
        "accepted": accepted,
        "acceptance_rate": accepted / total if total else 0.0,
        **meta,
    }
    tmp = out_dir / f".report.json.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(report, indent=1, sort_keys=True))
    os.replace(tmp, out_dir / "report.json")
    if rounds:
        plot_acceptance(rounds, out_dir / "acceptance.png")
    return report
