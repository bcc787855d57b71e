"""The SFT input pipeline: TFDS dialogues → tokens + loss masks → packed, batched, per-host rows.

Built on grain: deterministic given the seed, and checkpointable — `iterator.get_state()` is a
small JSON-able dict saved with every checkpoint and restored with `iterator.set_state(...)`, so a
resumed run sees exactly the batches the uninterrupted run would have seen.

Packing (first-fit) puts several examples into one row with `segment_ids` (1, 2, ...; 0 = padding)
and per-segment `positions`; the model never attends across segments.
"""

from __future__ import annotations

import gin
import grain
import numpy as np

from eigen_jax.chat.template import ChatTemplate
from eigen_jax.data.dialogues import decode_example, dialogue_source
from eigen_jax.data.tokenize import tokenize_dialogue


def _unpacked_row(ex: dict[str, np.ndarray], seq_len: int) -> dict[str, np.ndarray]:
    n = len(ex["tokens"])
    pad = seq_len - n
    seg = np.concatenate([np.ones(n, np.int32), np.zeros(pad, np.int32)])
    return {
        "tokens": np.pad(ex["tokens"], (0, pad)),
        "loss_mask": np.pad(ex["loss_mask"], (0, pad)),
        "segment_ids": seg,
        "positions": np.arange(seq_len, dtype=np.int32) * seg,
    }


def _packed_to_batch(b: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {
        "tokens": b["tokens"].astype(np.int32),
        "loss_mask": b["loss_mask"].astype(np.float32),
        "segment_ids": b["tokens_segment_ids"].astype(np.int32),
        "positions": b["tokens_positions"].astype(np.int32),
    }


def _has_role_target(ex: dict[str, np.ndarray]) -> bool:
    return bool((ex["loss_mask"][1:] == 1.0).any())


def _stack(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    return {k: np.stack([r[k] for r in rows]) for k in rows[0]}


@gin.configurable
def make_sft_dataset(
    data_dir: str,
    tokenizer_dir: str,
    objective: str = "agent",
    seq_len: int = 1024,
    batch_size: int = 8,
    split: str = "train",
    seed: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = None,
    pack: bool = True,
    num_packing_bins: int | None = None,
    dataset_name: str = "eigen_dialogues",
    process_index: int = 0,
    process_count: int = 1,
    pretokenize: bool = True,
    prompt_loss_weight: float = 0.0,
) -> grain.IterDataset:
    """Batches of `{"tokens", "positions", "segment_ids", "loss_mask"}`, each [batch, seq_len].

    `batch_size` is the global batch. With `process_count > 1` each batch holds only this
    process's rows of it (a contiguous block): every process builds the same global order
    (shuffle and packing need all examples' lengths), so the global batch is the same whatever
    the process count (`train.sft` instead keeps the whole batch on every process and lets each
    transfer the rows its devices hold). `num_epochs=None` repeats forever.
    `prompt_loss_weight`: the loss weight of context tokens (see `tokenize_dialogue`).
    `pretokenize` renders this process's examples once up front (rendering runs the Jinja
    template per turn, too slow to repeat every epoch); turn it off for datasets that do not fit.
    """
    if batch_size < 1 or seq_len < 2:
        raise ValueError(f"batch_size={batch_size} and seq_len={seq_len} must be >= 1 and >= 2")
    if batch_size % process_count:
        raise ValueError(
            f"global batch_size={batch_size} is not divisible by the {process_count} processes"
        )
    chat = ChatTemplate.from_pretrained(tokenizer_dir)
    source = dialogue_source(data_dir, split, dataset_name)
    ds = grain.MapDataset.source(source)
    ds = ds.map(
        lambda ex: tokenize_dialogue(
            chat, decode_example(ex), objective, seq_len, prompt_loss_weight
        )
    )
    if pretokenize:
        kept = [ex for ex in ds if _has_role_target(ex)]
        if not kept:
            raise ValueError(
                f"no {objective!r} example of split {split!r} has a loss token within "
                f"seq_len={seq_len} ({len(ds)} examples); raise seq_len"
            )
        ds = grain.MapDataset.source(kept)
    else:
        ds = ds.filter(_has_role_target)  # nothing to learn from otherwise
    if shuffle:
        ds = ds.shuffle(seed=seed)
    ds = ds.repeat(num_epochs)
    it = ds.to_iter_dataset()
    if pack:
        it = grain.experimental.FirstFitPackIterDataset(
            it,
            length_struct={"tokens": seq_len, "loss_mask": seq_len},
            num_packing_bins=num_packing_bins or batch_size,
            seed=seed,
            shuffle_bins=shuffle,
        )
        it = it.batch(batch_size, drop_remainder=True).map(_packed_to_batch)
    else:
        it = it.map(lambda ex: _unpacked_row(ex, seq_len)).batch(
            batch_size, drop_remainder=True, batch_fn=_stack
        )
    if process_count > 1:
        rows = slice(
            process_index * batch_size // process_count,
            (process_index + 1) * batch_size // process_count,
        )
        it = it.map(lambda b: {k: v[rows] for k, v in b.items()})
    return it
