"""Train a small byte-level BPE tokenizer with ChatML + Hermes tool tokens: our tiny model family.

Why: tests and quick experiments need models with tiny vocabularies whose tokenizer behaves like
Qwen's (ChatML turns, ``<tool_call>`` tags, tool results as ``<tool_response>`` in a user turn),
and the serving engine requires ``len(tokenizer) == model vocab``. So the vocabulary size is
exact: if the corpus runs out of merges first, the remainder is filled with reserved special
tokens ``<|reserved_N|>`` that never occur in text.

The chat template below is ours, for this family only (real families use their own template):
tools are listed in the system turn, every tool result is wrapped in ``<tool_response>`` inside
its own user-role turn (unlike Qwen, consecutive results are not merged, which keeps the template
prefix-stable message by message), and there are no think blocks.

The output is an ordinary HF tokenizer directory that `transformers.AutoTokenizer` loads.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

SPECIAL_TOKENS = ("<|endoftext|>", "<|im_start|>", "<|im_end|>")
TOOL_TOKENS = ("<tool_call>", "</tool_call>", "<tool_response>", "</tool_response>")
_BYTE_ALPHABET = 256

CHAT_TEMPLATE = (
    "{%- set has_system = messages and messages[0].role == 'system' %}"
    "{%- if tools or has_system %}"
    "{{- '<|im_start|>system\\n' }}"
    "{%- if has_system %}{{- messages[0].content }}{%- if tools %}{{- '\\n\\n' }}{%- endif %}{%- endif %}"
    "{%- if tools %}"
    "{{- '# Tools\\n\\nTo call a tool, reply with <tool_call>\\n{\"name\": <tool-name>, \"arguments\": "
    "<json-object>}\\n</tool_call> (one block per call). Tools:\\n<tools>' }}"
    "{%- for tool in tools %}{{- '\\n' + (tool | tojson) }}{%- endfor %}"
    "{{- '\\n</tools>' }}"
    "{%- endif %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- for message in messages %}"
    "{%- if message.role == 'system' and loop.first %}"
    "{%- elif message.role == 'tool' %}"
    "{{- '<|im_start|>user\\n<tool_response>\\n' + message.content + '\\n</tool_response><|im_end|>\\n' }}"
    "{%- elif message.role == 'assistant' %}"
    "{{- '<|im_start|>assistant\\n' + (message.content or '') }}"
    "{%- for call in (message.tool_calls or []) %}"
    "{%- set fn = call.function if call.function is defined else call %}"
    "{%- if not loop.first or message.content %}{{- '\\n' }}{%- endif %}"
    "{{- '<tool_call>\\n{\"name\": \"' + fn.name + '\", \"arguments\": ' }}"
    "{%- if fn.arguments is string %}{{- fn.arguments }}{%- else %}{{- fn.arguments | tojson }}{%- endif %}"
    "{{- '}\\n</tool_call>' }}"
    "{%- endfor %}"
    "{{- '<|im_end|>\\n' }}"
    "{%- else %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)


def min_vocab_size() -> int:
    """Byte alphabet + ChatML special tokens + tool tags."""
    return _BYTE_ALPHABET + len(SPECIAL_TOKENS) + len(TOOL_TOKENS)


def train_tiny_tokenizer(
    texts: Iterable[str],
    vocab_size: int,
    output_dir: str | os.PathLike | None = None,
    *,
    min_frequency: int = 2,
    model_max_length: int = 32768,
    split_digits: bool = False,
    isolate_spaces: bool = False,
):
    """Train on `texts`, return an HF fast tokenizer with exactly `vocab_size` ids (saved if asked).

    Ids 0..6 are ``<|endoftext|>``, ``<|im_start|>``, ``<|im_end|>`` and the four tool tags, for
    every vocabulary size; eos is ``<|im_end|>`` (the end of an assistant turn), pad is
    ``<|endoftext|>``. Tool tags are added tokens but not special, as in Qwen, so decoding with
    ``skip_special_tokens=True`` keeps them.

    `split_digits` makes every digit its own token, as Qwen's and Llama's pre-tokenizers do (ids,
    dates and zips then copy digit by digit from ten well-trained embeddings instead of one rare
    merged token each), at the price of more tokens per dialogue. Off by default: on the
    quickstart it left held-out pass^1 unchanged (33.3 at 100 SFT steps; bench/NOTES.md, "Why
    GRPO cannot beat SFT on the easy-tier quickstart").

    `isolate_spaces` makes every space its own token, so a word is the same id wherever it stands:
    byte-level BPE otherwise gives " Vera" (in "I'm Vera Hansen") and "Vera" (in the tool call's
    `{"first_name": "Vera"}`) two unrelated ids, and a model trained from scratch must learn that
    pairing for every name, zip and id before it can copy an argument from the conversation.
    Costs 23% more tokens per outfitter dialogue; off by default: at the quickstart's 80 SFT steps
    it was worse (bench/NOTES.md, "Copying arguments").
    """
    from tokenizers import (
        AddedToken,
        Regex,
        Tokenizer,
        decoders,
        models,
        pre_tokenizers,
        processors,
        trainers,
    )
    from transformers import PreTrainedTokenizerFast

    if (
        isinstance(vocab_size, bool)
        or not isinstance(vocab_size, int)
        or vocab_size < min_vocab_size()
    ):
        raise ValueError(
            f"vocab_size={vocab_size!r}; must be an int >= {min_vocab_size()} "
            "(256 bytes + 3 special tokens + 4 tool tags)"
        )
    if isinstance(texts, (str, bytes)):
        raise TypeError("texts must be an iterable of strings, not a single string")
    if min_frequency < 1:
        raise ValueError(f"min_frequency={min_frequency}; must be >= 1")

    tokenizer = Tokenizer(models.BPE())
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    steps = [pre_tokenizers.Split(Regex(" "), behavior="isolated")] if isolate_spaces else []
    steps += [pre_tokenizers.Digits(individual_digits=True)] if split_digits else []
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(steps + [byte_level]) if steps else byte_level
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    # Registered before training so tags in the corpus are cut out instead of learnt as merges.
    tokenizer.add_tokens(
        [AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS]
        + [AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS]
    )
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        show_progress=False,
        special_tokens=list(SPECIAL_TOKENS + TOOL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    n_texts = 0

    def _checked():
        nonlocal n_texts
        for i, text in enumerate(texts):
            if not isinstance(text, str):
                raise TypeError(f"texts[{i}] is {type(text).__name__}, expected str")
            n_texts += 1
            yield text

    tokenizer.train_from_iterator(_checked(), trainer)
    if n_texts == 0:
        raise ValueError("texts is empty; a tokenizer needs a corpus")
    tokenizer.add_tokens([AddedToken(t, special=False, normalized=False) for t in TOOL_TOKENS])
    size = tokenizer.get_vocab_size(with_added_tokens=True)
    if size > vocab_size:
        raise RuntimeError(f"trainer produced {size} ids for vocab_size={vocab_size}")
    tokenizer.add_special_tokens(
        [
            AddedToken(f"<|reserved_{i}|>", special=True, normalized=False)
            for i in range(vocab_size - size)
        ]
    )

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        chat_template=CHAT_TEMPLATE,
        model_max_length=model_max_length,
        clean_up_tokenization_spaces=False,
    )
    if len(hf) != vocab_size:
        raise RuntimeError(f"tokenizer has {len(hf)} ids, expected exactly {vocab_size}")
    if output_dir is not None:
        hf.save_pretrained(os.fspath(output_dir))
    return hf
