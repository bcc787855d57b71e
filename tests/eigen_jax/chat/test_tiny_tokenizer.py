"""Tiny BPE tokenizer: exact vocab size, fixed special ids, lossless, loadable by AutoTokenizer."""

from __future__ import annotations

import pytest
from transformers import AutoTokenizer

from eigen_jax.chat.tiny_tokenizer import (
    SPECIAL_TOKENS,
    TOOL_TOKENS,
    min_vocab_size,
    train_tiny_tokenizer,
)

from . import dialogues


@pytest.mark.parametrize("vocab_size", [min_vocab_size(), 300, 1000])
def test_vocab_size_is_exact_and_special_ids_fixed(vocab_size, tmp_path):
    train_tiny_tokenizer(dialogues.corpus(), vocab_size, tmp_path)
    tok = AutoTokenizer.from_pretrained(tmp_path)
    assert len(tok) == vocab_size
    assert tok.convert_tokens_to_ids(list(SPECIAL_TOKENS + TOOL_TOKENS)) == list(range(7))
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    ids = tok.encode(dialogues.hermes_text(dialogues.DIALOGUE[2]), add_special_tokens=False)
    assert max(ids) < vocab_size


def test_lossless_and_tags_are_single_tokens(tiny_chat):
    tok = tiny_chat.tokenizer
    text = "Grüße 東京 🚀 <tool_call>\n{\"a\": 1}\n</tool_call> tabs\tand  spaces\n\n"
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    assert ids.count(tok.convert_tokens_to_ids("<tool_call>")) == 1
    # tool tags are not special: kept when special tokens are skipped; ChatML tokens are dropped
    assert tok.decode(ids + [2], skip_special_tokens=True) == text
    reserved = [t for t in tok.get_vocab() if t.startswith("<|reserved_")]
    assert not any(i in ids for i in tok.convert_tokens_to_ids(reserved))


def test_training_learns_merges_from_the_corpus(tiny_chat):
    # words frequent in the corpus become single tokens; 640 ids leave room for them
    assert len(tiny_chat.encode(" Paris")) == 1
    assert len(tiny_chat.encode("mia_li_3668")) < len("mia_li_3668")


def test_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match=r"vocab_size=100; must be an int >= 263"):
        train_tiny_tokenizer(["x"], 100)
    with pytest.raises(ValueError, match="texts is empty"):
        train_tiny_tokenizer([], 300)
    with pytest.raises(TypeError, match="single string"):
        train_tiny_tokenizer("abc", 300)
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        train_tiny_tokenizer(["a", 3], 300)


@pytest.mark.parametrize("split_digits", [True, False])
def test_split_digits(split_digits, tmp_path):
    # a corpus where "59801" is frequent enough to become one merged token unless digits split
    corpus = [f"zip 59801, rental R{i % 7}700 on 2025-06-{10 + i % 9}" for i in range(200)]
    tok = train_tiny_tokenizer(corpus, 400, tmp_path, split_digits=split_digits)
    text = "I'm at zip 59801, rental R7700 from 2025-06-29."
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids) == text
    pieces = [tok.decode([i]) for i in ids]
    has_multi_digit = any(sum(c.isdigit() for c in p) > 1 for p in pieces)
    assert has_multi_digit != split_digits, pieces
    if split_digits:
        assert [p for p in pieces if any(c.isdigit() for c in p)][:5] == list("59801")


@pytest.mark.parametrize("isolate_spaces", [True, False])
def test_isolate_spaces_gives_a_word_one_id_in_prose_and_json(isolate_spaces, tmp_path):
    corpus = ['I am Vera Hansen, zip 59801.', '{"first_name": "Vera", "zip": "59801"}'] * 100
    tok = train_tiny_tokenizer(corpus, 400, tmp_path, isolate_spaces=isolate_spaces)
    prose, call = (tok.encode(t, add_special_tokens=False) for t in corpus[:2])
    for text, ids in zip(corpus, (prose, call)):
        assert tok.decode(ids) == text
    vera = lambda ids: [tok.decode([i]) for i in ids if "Vera" in tok.decode([i])]
    assert (vera(prose) == vera(call) == ["Vera"]) == isolate_spaces, (vera(prose), vera(call))
    if isolate_spaces:  # every space is its own token; decoding "a  b\n c" round-trips
        assert all(tok.decode([i]) == " " or " " not in tok.decode([i]) for i in prose)
        assert tok.decode(tok.encode("a  b\n c", add_special_tokens=False)) == "a  b\n c"
