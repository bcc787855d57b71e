"""Held-out success split by whether an outfitter task writes to the database.

Usage: python bench/eval_by_outcome.py --workdir WORKDIR --checkpoints sft,grpo
           [--domain_kwargs '{"n_train": 400, "n_test": 100, "difficulties": ["easy"]}']

Why: pass^k alone does not say whether a policy completes write requests (identity lookup, then
a write with copied arguments) or only the requests that end in a refusal or a transfer; the
task's `description.n_writes` does.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workdir", required=True)
    ap.add_argument("--checkpoints", default="sft,grpo")
    ap.add_argument(
        "--domain_kwargs", default='{"n_train": 400, "n_test": 100, "difficulties": ["easy"]}'
    )
    args = ap.parse_args()
    from data_agents.domains import load

    tasks = load("outfitter", **json.loads(args.domain_kwargs)).tasks("test")
    writes = {t.id: t.to_json()["description"]["n_writes"] > 0 for t in tasks}
    for name in args.checkpoints.split(","):
        results = json.loads((Path(args.workdir) / "eval" / name / "results.json").read_text())
        agg: dict[str, list[float]] = defaultdict(lambda: [0.0, 0])
        for task_id, trials in results["tasks"].items():
            kind = "write" if writes[task_id] else "no-write"
            agg[kind][0] += sum(t["reward"] for t in trials)
            agg[kind][1] += len(trials)
        row = ", ".join(f"{k} {s:.0f}/{n} = {s / n:.3f}" for k, (s, n) in sorted(agg.items()))
        print(f"{name}: {row}")


if __name__ == "__main__":
    main()
