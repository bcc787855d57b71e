"""The table and JSON of `bench/compare_tunix.py` (kept apart so the harness stays one screen of
workloads): every eigen-jax figure beside Tunix's, ratios, and MFU for both stacks against the
matmul rate measured in the same run."""

from __future__ import annotations

import json
import os
import platform
import time

import jax

ROWS = [
    ("grpo", "GRPO step (s, lower better)", "step_s", True),
    ("grpo", "GRPO compile+first step (s)", "compile_s", True),
    ("decode", "decode tok/s", "decode_tok_s", False),
    ("decode", "generate tok/s (prefill+decode)", "generate_tok_s", False),
    ("decode", "sampler compile+first call (s)", "compile_s", True),
    ("train", "train-step tokens/s", "tokens_per_s", False),
    ("train", "train compile+first step (s)", "compile_s", True),
]


def _row(model, label, ours, theirs, lower_better) -> dict:
    ratio = None if theirs is None else (theirs / ours if lower_better else ours / theirs)
    return {"model": model, "metric": label, "eigen_jax": ours, "tunix": theirs, "ratio": ratio}


def _train_rows(name, train_key, train, theirs, peak) -> list[dict]:
    """Achieved model FLOP/s and MFU of one eigen-jax train measurement, and of Tunix's step
    counted with the same FLOPs per token (same model, same shapes) over the same peak."""
    suffix = train_key[len("train") :]
    ours_rate = train["tokens_per_s"] * train["flops_per_token"]
    their_rate = (
        theirs["train"]["tokens_per_s"] * train["flops_per_token"] if "train" in theirs else None
    )
    return [
        _row(
            name,
            "train model TFLOP/s" + suffix,
            ours_rate / 1e12,
            None if their_rate is None else their_rate / 1e12,
            False,
        ),
        _row(
            name,
            "train MFU" + suffix,
            ours_rate / peak,
            None if their_rate is None else their_rate / peak,
            False,
        ),
    ]


def table(results, peaks) -> list[dict]:
    """Rows (model, metric, eigen-jax, Tunix, ratio); ratio > 1 means eigen-jax is better.
    Each eigen-jax train measurement (one per attention impl, "train[cudnn]") is set against
    Tunix's one train measurement."""
    rows = []
    for r in results:
        name, ours, theirs = r["spec"]["name"], r["eigen_jax"], r["tunix"]
        train_keys = [k for k in ours if k.startswith("train")]
        for key, label, field, lower_better in ROWS:
            for ours_key in train_keys if key == "train" else [key]:
                # LoRA steps (`train_lora`) are set against Tunix's LoRA step (qwix).
                their_key = "train_lora" if ours_key == "train_lora" else key
                if ours_key in ours:
                    their = theirs[their_key][field] if their_key in theirs else None
                    rows.append(
                        _row(
                            name,
                            label + ours_key[len(key) :],
                            ours[ours_key][field],
                            their,
                            lower_better,
                        )
                    )
        for key in train_keys:  # MFU counts full-parameter FLOPs: not for the LoRA step
            if key != "train_lora":
                rows += _train_rows(name, key, ours[key], theirs, peaks[r["spec"]["dtype"]])
    return rows


def report(config: str, results, peaks, load_before, start: float, out: str) -> None:
    """Print the table and write it with every raw figure to `out` (JSON)."""
    rows = table(results, peaks)
    device = jax.devices()[0]
    print(
        f"\ndevice: {device.platform} {device.device_kind}  load avg before/after: "
        f"{load_before[0]:.2f}/{os.getloadavg()[0]:.2f}  matmul peak: "
        + ", ".join(f"{d} {p / 1e12:.3f} TFLOP/s" for d, p in peaks.items())
    )
    print(f"{'model':<12}{'metric':<42}{'eigen-jax':>12}{'Tunix':>12}{'ratio':>8}")
    for r in rows:
        fmt = (
            (lambda v: "" if v is None else f"{v:.1%}")
            if "MFU" in r["metric"]
            else (lambda v: "" if v is None else f"{v:.4g}")
        )
        print(
            f"{r['model']:<12}{r['metric']:<42}{fmt(r['eigen_jax']):>12}{fmt(r['tunix']):>12}"
            f"{'' if r['ratio'] is None else format(r['ratio'], '.2f'):>8}"
        )
    print(
        "ratio: eigen-jax advantage (Tunix time / eigen-jax time, or eigen-jax rate / Tunix rate)"
    )
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with open(out, "w") as f:
        json.dump(
            {
                "config": config,
                "device": f"{device.platform} {device.device_kind}",
                "host": platform.node(),
                "jax": jax.__version__,
                "load_avg_before": load_before,
                "load_avg_after": os.getloadavg(),
                "matmul_peak_flops": peaks,
                "wall_s": time.time() - start,
                "table": rows,
                "results": results,
            },
            f,
            indent=1,
        )
    print(f"wrote {out}  ({time.time() - start:.0f} s)")
