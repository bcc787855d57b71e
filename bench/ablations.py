"""Quickstart ablations, one gin binding each, on top of a finished quickstart's SFT checkpoints.

    python bench/ablations.py --base_workdir workdir/quickstart [--variants user_base,g4]
        [--budget 32]

Variants (paper_recipe.md): GRPO with the untuned base model (the paper's base-user ablation; a
quickstart started from a base checkpoint) or an untrained model vs the SFT user model; dynamic
filtering off vs
on; group size 4 vs 8 vs 16 at an equal rollout budget (tasks_per_step * group_size constant).
Each variant copies the base run's data, tokenizer and SFT stages (so only GRPO and its evaluation
run), then prints one table: variant, held-out pass^1 / pass^k of the GRPO policy, GRPO seconds.
Raw results go to `<base_workdir>/ablations/ablations.json`. Slow: minutes per variant on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def variants(budget: int) -> dict[str, list[str]]:
    """One gin binding (set) per variant; the group-size variants keep `budget` episodes a step."""
    out = {
        "baseline": [],
        "user_base": ["grpo_stage.user='base'"],
        "user_untrained": ["grpo_stage.user='untrained'"],
        "filtering_off": ["GRPOConfig.dynamic_filtering=False"],
    }
    for g in (4, 8, 16):
        if budget % g:
            raise ValueError(f"--budget {budget} is not a multiple of group size {g}")
        out[f"g{g}"] = [
            f"GRPOConfig.group_size={g}",
            f"GRPOConfig.tasks_per_step={budget // g}",
            f"SamplerConfig.num_slots={budget}",
        ]
    return out


REUSED = ("data", "tokenizer", "sft_agent", "sft_user", "pipeline.json")


def run_variant(base: Path, name: str, bindings: list[str], gin_file: str) -> dict:
    wd = base / "ablations" / name
    wd.mkdir(parents=True, exist_ok=True)
    for item in REUSED:
        src, dst = base / item, wd / item
        if src.exists() and not dst.exists():
            (shutil.copytree if src.is_dir() else shutil.copy)(src, dst)
    stages = (
        "run_pipeline.stages=[@reference_data_stage, @base_model_stage, @agent/sft_stage, "
        "@user/sft_stage, @grpo_stage, @eval_stage]"
    )
    cmd = [
        sys.executable,
        str(REPO / "launch" / "train.py"),
        "--gin_file",
        gin_file,
        "--workdir",
        str(wd),
        f"--gin_bindings={stages}",
        "--gin_bindings=eval_stage.checkpoints=['grpo']",
    ]
    cmd += [f"--gin_bindings={b}" for b in bindings]
    subprocess.run(cmd, cwd=REPO, check=True, env=dict(os.environ, JAX_PLATFORMS="cpu"))
    res = json.loads((wd / "eval" / "grpo" / "results.json").read_text())
    grpo = json.loads((wd / "grpo" / "result.json").read_text())
    timings = json.loads((wd / "pipeline.json").read_text())["timings"]
    return {
        "variant": name,
        "bindings": bindings,
        "pass^k": res["pass^k"],
        "reward_curve": grpo.get("reward_curve"),
        "grpo_s": timings.get("grpo"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base_workdir", required=True)
    ap.add_argument("--gin_file", default="gin/quickstart.gin")
    ap.add_argument("--variants", default="baseline,user_base,filtering_off,g4,g8,g16")
    ap.add_argument(
        "--budget",
        type=int,
        default=32,
        help="episodes per GRPO step of the group-size variants (multiple of 16)",
    )
    args = ap.parse_args()
    base = Path(args.base_workdir).absolute()
    if not (base / "sft_agent" / "hf" / "config.json").exists():
        sys.exit(f"ablations: {base} has no finished quickstart (run `make quickstart` first)")
    try:
        table = variants(args.budget)
    except ValueError as e:
        sys.exit(f"ablations: {e}")
    rows = []
    for name in args.variants.split(","):
        if name not in table:
            sys.exit(f"ablations: unknown variant {name!r}; known: {', '.join(table)}")
        rows.append(run_variant(base, name, table[name], args.gin_file))
        (base / "ablations" / "ablations.json").write_text(json.dumps(rows, indent=1))
    print(f"\n{'variant':16s} {'pass^1':>7s} {'pass^max':>9s} {'grpo s':>8s}")
    for r in rows:
        ks = sorted(r["pass^k"], key=int)
        print(
            f"{r['variant']:16s} {100 * r['pass^k'][ks[0]]:7.1f} "
            f"{100 * r['pass^k'][ks[-1]]:9.1f} {r['grpo_s'] or 0:8.0f}"
        )


if __name__ == "__main__":
    main()
