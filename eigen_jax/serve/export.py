"""Export a checkpoint for the SGLang servers and print the commands that serve it there.

Why re-export an HF directory: loading it through `models.from_pretrained` and writing it back
with `models.save_pretrained` proves the weights round-trip through our layout, optionally casts
them (e.g. to bfloat16 for serving), and yields exactly the files SGLang loads (config.json,
safetensors, tokenizer with its chat template, generation_config.json).
"""

from __future__ import annotations

import os
import shlex
import shutil

from eigen_jax.chat.generation_config import write_generation_files
from eigen_jax.serve.server import check_checkpoint_dir, load_chat, load_model

# Files besides weights and config that SGLang (via transformers) reads from the model directory.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "chat_template.jinja",
    "generation_config.json",
    "vocab.json",
    "merges.txt",
    "added_tokens.json",
    "tokenizer.model",
)
# Our tool parser name -> SGLang's `--tool-call-parser` for the same format.
SGLANG_TOOL_PARSERS = {"hermes": "qwen25", "llama3_json": "llama3"}


def export_checkpoint(checkpoint: str, out_dir: str, dtype: str | None = None) -> list[str]:
    """Write `checkpoint` (re-saved weights + tokenizer files) to `out_dir`; returns the files."""
    checkpoint = check_checkpoint_dir(checkpoint)
    load_chat(checkpoint)  # the tokenizer and its chat template must load before we export
    if os.path.abspath(out_dir) == checkpoint:
        raise ValueError("export directory must differ from the checkpoint directory")
    from eigen_jax import models

    model, config = load_model(checkpoint, dtype)
    os.makedirs(out_dir, exist_ok=True)
    written = list(models.save_pretrained(model, config, out_dir)) + ["config.json"]
    for name in TOKENIZER_FILES:
        src = os.path.join(checkpoint, name)
        if os.path.isfile(src):
            shutil.copy2(src, os.path.join(out_dir, name))
            written.append(name)
    write_generation_files(out_dir)  # eos/pad ids of the tokenizer, not the preset's
    return sorted(set(written + ["generation_config.json"]))


def sglang_commands(
    model_dir: str,
    host: str = "127.0.0.1",
    port: int = 30000,
    tool_parser: str = "hermes",
    tp_size: int = 1,
) -> dict[str, str]:
    """The exact launch commands for sglang-jax (CPU and TPU) and SGLang (GPU) on `model_dir`."""
    if tool_parser not in SGLANG_TOOL_PARSERS:
        raise ValueError(
            f"no SGLang tool-call parser known for {tool_parser!r}; known: "
            f"{sorted(SGLANG_TOOL_PARSERS)}"
        )
    path = shlex.quote(os.path.abspath(model_dir))
    common = (
        f"--model-path {path} --host {host} --port {port} "
        f"--tool-call-parser {SGLANG_TOOL_PARSERS[tool_parser]}"
    )
    return {
        "sglang-jax (CPU)": (
            "JAX_PLATFORMS=cpu $(scripts/sglang_venv.sh)/bin/python -m "
            f"sgl_jax.launch_server {common} --device cpu "
            "--attention-backend native --disable-precompile "
            "--max-total-tokens 8192"
        ),
        "sglang-jax (TPU)": (f"python -m sgl_jax.launch_server {common} --tp-size {tp_size}"),
        "sglang (GPU)": f"python -m sglang.launch_server {common} --tp-size {tp_size}",
    }
