"""Pipeline stages around a pretrained base model: building the tiny base's synthetic corpus, and
starting a run from a base checkpoint (`gin/tiny_base.gin`, `gin/quickstart.gin`).

Why a base: the paper post-trains a pretrained LLM, which already copies names and ids from its
context; a tiny model trained from scratch learns that only late in agent SFT (bench/NOTES.md,
"Copying arguments"), so the quickstart starts from the tiny base instead.
"""

from __future__ import annotations

from pathlib import Path

import gin

from eigen_jax import multihost, paths
from launch.pipeline import RunContext


@gin.configurable
def pretrain_data_stage(
    ctx: RunContext, num_train: int = 20000, num_test: int = 200, seed: int = 0
) -> str:
    """The synthetic, domain-independent corpus (`data_agents.pretrain`) → journal → TFDS, like
    any dataset; the tokenizer stage then trains on its journal."""
    splits = multihost.primary_first(
        "pretrain_data", lambda: _pretrain_data(ctx, num_train, num_test, seed)
    )
    root = ctx.path("pretrain_data")
    ctx.data_dir, ctx.journal_dir = str(root / "tfds"), str(root / "journals")
    ctx.dataset_splits = splits
    return "pretrain_data"


def _pretrain_data(ctx: RunContext, num_train: int, num_test: int, seed: int) -> dict[str, int]:
    from data_agents.journal import Journal
    from data_agents.pretrain.corpus import records
    from data_agents.tfds import build_dataset

    with paths.local_staging(ctx.path("pretrain_data"), "pretrain_data", pull=True) as local:
        with Journal(Path(local) / "journals" / "corpus.jsonl") as journal:
            for split, n in (("train", num_train), ("test", num_test)):
                for record in records(split, n, seed):
                    if record.key not in journal:
                        journal.append(record)
        builder = build_dataset(Path(local) / "journals", Path(local) / "tfds")
    return {k: v.num_examples for k, v in builder.info.splits.items()}


@gin.configurable
def base_model_stage(ctx: RunContext, hf_dir: str = gin.REQUIRED) -> str:
    """Start from the base checkpoint `hf_dir`: its tokenizer for every later stage (so no
    tokenizer stage), its weights for `sft_stage(init_from='base')`, and the `base` checkpoint
    for evaluation and the base-user ablation (`grpo_stage(user='base')`). A relative path that
    does not exist under the working directory is read where the configs are (the repository,
    or the installed package: `launch.common.config_root`)."""
    from launch.common import config_root

    path = Path(hf_dir)
    if not path.is_absolute() and not path.exists():
        path = Path(config_root()) / hf_dir
    if not (path / "config.json").is_file() or not (path / "tokenizer.json").is_file():
        raise FileNotFoundError(f"base_model_stage: no HF checkpoint with a tokenizer at {hf_dir}")
    ctx.hf_dirs["base"] = ctx.tokenizer_dir = str(path.resolve())
    return "base_model"
