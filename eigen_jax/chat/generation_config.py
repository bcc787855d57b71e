"""The stop and padding ids an exported checkpoint declares, so that `transformers.generate`,
SGLang and vLLM stop a chat turn where our sampler does.

Why: a checkpoint's config.json carries the preset's ids (a tiny model trained with a locally
trained tokenizer would keep Qwen3's 151645, outside its vocabulary), and without a
`generation_config.json` transformers stops only at config.json's eos. A chat model's turn ends at
its template's end-of-turn token (`<|im_end|>`, `<|eot_id|>`), which for a base tokenizer is not
its eos (`<|endoftext|>`), so every id our sampler stops at (`ChatTemplate.stop_ids`: the
end-of-turn token first, then the tokenizer's eos and a source generation_config's) is declared.
"""

from __future__ import annotations

import json
import os
from typing import Any


def stop_and_pad_ids(tokenizer_dir: str | os.PathLike) -> dict[str, Any]:
    """{"eos_token_id": int | list[int], "pad_token_id": int, "bos_token_id": int | None}."""
    from eigen_jax.chat.template import ChatTemplate

    chat = ChatTemplate.from_pretrained(tokenizer_dir)
    eos = list(chat.stop_ids)
    pad = chat.tokenizer.pad_token_id
    return {
        "eos_token_id": eos[0] if len(eos) == 1 else eos,
        "pad_token_id": int(pad) if pad is not None else eos[0],
        "bos_token_id": chat.tokenizer.bos_token_id,
    }


def write_generation_files(
    model_dir: str | os.PathLike, tokenizer_dir: str | os.PathLike | None = None
) -> dict[str, Any]:
    """Set config.json's eos/pad/bos ids from the tokenizer in `tokenizer_dir` (default: the one in
    `model_dir`) and write generation_config.json with them, keeping any sampling defaults the
    directory's generation_config.json already had (a released model's temperature, top_p).
    Returns the ids written. `model_dir` is a local folder (exports are staged locally)."""
    from transformers import GenerationConfig

    model_dir = os.fspath(model_dir)
    ids = stop_and_pad_ids(tokenizer_dir if tokenizer_dir is not None else model_dir)
    set_ids = {k: v for k, v in ids.items() if v is not None}
    config_path = os.path.join(model_dir, "config.json")
    with open(config_path) as f:
        config = json.load(f)
    config.update(set_ids)
    with open(config_path, "w") as f:
        json.dump(config, f, indent=2)
    existing = os.path.join(model_dir, "generation_config.json")
    base = {}
    if os.path.exists(existing):
        with open(existing) as f:
            base = {k: v for k, v in json.load(f).items() if k != "transformers_version"}
    GenerationConfig(**{**base, **set_ids}).save_pretrained(model_dir)
    return ids
