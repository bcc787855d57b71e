"""SFT input pipeline: loss masks against the dialogue itself, packing, per-host sharding, and
checkpointable iterator state (a restored iterator yields exactly the batches that followed)."""

import json

import gin
import numpy as np
import pytest

from eigen_jax.chat.template import ChatTemplate
from eigen_jax.chat.tiny_tokenizer import train_tiny_tokenizer
from eigen_jax.data.dialogues import decode_example, dialogue_source
from eigen_jax.data.pipeline import make_sft_dataset
from eigen_jax.data.tokenize import tokenize_dialogue


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    from data_agents.reference_backend import generate_reference
    from data_agents.tfds import build_dataset

    root = tmp_path_factory.mktemp("sftdata")
    kwargs = {"n_train": 24, "n_test": 4}
    generate_reference(
        "outfitter", root / "journals" / "j.jsonl", {"train": 24, "test": 4}, **kwargs
    )
    build_dataset(root / "journals", root / "tfds")
    texts = []
    for line in (root / "journals" / "j.jsonl").read_text().splitlines():
        r = json.loads(line)
        texts += [m["content"] for m in r["messages"]] + [json.dumps(r["tools"])]
    train_tiny_tokenizer(texts, 512, str(root / "tok"))
    return str(root / "tfds"), str(root / "tok")


@pytest.fixture
def compact():
    """The tiny-model prompt (no tool listing), so examples fit short rows."""
    gin.bind_parameter("agent_prompt.mode", "compact")
    yield
    gin.clear_config()


def spans(mask):
    """[start, end) runs of True."""
    idx = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(int), [0]])))
    return list(zip(idx[::2], idx[1::2]))


@pytest.mark.parametrize("mode", ["full", "compact"])
def test_agent_mask_is_exactly_the_assistant_turns(dataset, mode):
    data_dir, tok = dataset
    chat = ChatTemplate.from_pretrained(tok)
    gin.bind_parameter("agent_prompt.mode", mode)
    try:
        d = decode_example(dialogue_source(data_dir, "train")[0])
        ex = tokenize_dialogue(chat, d, "agent", 100_000)
    finally:
        gin.clear_config()
    assistant = [m for m in d["messages"] if m["role"] == "assistant"]
    runs = spans(ex["loss_mask"] > 0)
    assert len(runs) == len(assistant)
    for (s, e), msg in zip(runs, assistant):
        text = chat.decode(ex["tokens"][s:e])
        assert text.endswith(chat.end_of_turn_text)  # the end-of-turn token is trained
        parsed = chat.parse_text(text)  # the span parses back to the message
        assert parsed.content.strip() == msg["content"].strip()
        assert [(c.name, c.arguments) for c in parsed.tool_calls] == [
            (c["name"], c["arguments"]) for c in msg.get("tool_calls", [])
        ]


@pytest.mark.parametrize("objective", ["agent", "user"])
def test_prompt_loss_weight_weights_every_other_token(dataset, compact, objective):
    data_dir, tok = dataset
    chat = ChatTemplate.from_pretrained(tok)
    d = decode_example(dialogue_source(data_dir, "train")[2])
    role = tokenize_dialogue(chat, d, objective, 100_000)
    weighted = tokenize_dialogue(chat, d, objective, 100_000, prompt_loss_weight=0.1)
    np.testing.assert_array_equal(weighted["tokens"], role["tokens"])
    np.testing.assert_array_equal(
        weighted["loss_mask"], np.where(role["loss_mask"] > 0, 1.0, 0.1).astype(np.float32)
    )
    with pytest.raises(ValueError, match="prompt_loss_weight"):
        tokenize_dialogue(chat, d, objective, 100_000, prompt_loss_weight=1.0)
    batch = next(iter(make_sft_dataset(data_dir, tok, objective, 4096, 2, prompt_loss_weight=0.1)))
    inside = batch["segment_ids"] > 0
    assert set(np.unique(batch["loss_mask"][inside])) == {np.float32(0.1), np.float32(1.0)}
    assert not batch["loss_mask"][~inside].any()


def test_pretrain_objective_scores_every_token_of_the_document_as_written(dataset, compact):
    """Language modelling over the whole rendered document, with its own system prompt and tool
    schemas whatever the agent prompt mode (compact is bound here)."""
    from data_agents.pretrain.corpus import document

    _, tok = dataset
    chat = ChatTemplate.from_pretrained(tok)
    doc = next(d for d in map(document, range(50)) if d["tools"])
    ex = tokenize_dialogue(chat, doc, "pretrain", 100_000)
    assert ex["loss_mask"].dtype == np.float32 and (ex["loss_mask"] == 1.0).all()
    text = chat.decode(ex["tokens"])
    assert doc["policy"] in text
    assert all(t["function"]["name"] in text for t in doc["tools"])
    expected = [{"role": "system", "content": doc["policy"]}, *doc["messages"]]
    assert list(ex["tokens"]) == chat.render(expected, doc["tools"])


def test_user_mask_is_exactly_the_user_turns(dataset):
    data_dir, tok = dataset
    chat = ChatTemplate.from_pretrained(tok)
    d = decode_example(dialogue_source(data_dir, "train")[1])
    ex = tokenize_dialogue(chat, d, "user", 100_000)
    users = [m["content"] for m in d["messages"] if m["role"] == "user"]
    got = [
        chat.decode(ex["tokens"][s:e]).removesuffix(chat.end_of_turn_text)
        for s, e in spans(ex["loss_mask"] > 0)
    ]
    assert got == users


def test_packing_segments_and_positions(dataset, compact):
    data_dir, tok = dataset
    it = iter(make_sft_dataset(data_dir, tok, "agent", seq_len=2048, batch_size=2, seed=1))
    singles = {
        tuple(
            tokenize_dialogue(ChatTemplate.from_pretrained(tok), decode_example(ex), "agent", 2048)[
                "tokens"
            ]
        )
        for ex in dialogue_source(data_dir, "train")
    }
    packed_any = False
    for _ in range(3):
        b = next(it)
        assert b["tokens"].shape == (2, 2048)
        for row in range(2):
            seg, pos = b["segment_ids"][row], b["positions"][row]
            assert not b["loss_mask"][row][seg == 0].any()
            for sid in set(seg[seg > 0].tolist()):
                where = np.flatnonzero(seg == sid)
                assert (np.diff(where) == 1).all()  # contiguous
                assert (pos[where] == np.arange(len(where))).all()  # positions restart
                assert tuple(b["tokens"][row][where]) in singles  # an unaltered example
            packed_any |= len(set(seg[seg > 0].tolist())) > 1
    assert packed_any


def test_iterator_state_restores_the_same_batches(dataset, compact):
    data_dir, tok = dataset
    make = lambda: iter(make_sft_dataset(data_dir, tok, "agent", seq_len=1024, batch_size=2))
    it = make()
    for _ in range(3):
        next(it)
    state = json.loads(json.dumps(it.get_state()))  # what the checkpoint stores
    expected = [next(it) for _ in range(3)]
    resumed = make()
    resumed.set_state(state)
    for want in expected:
        got = next(resumed)
        for k in want:
            np.testing.assert_array_equal(got[k], want[k])


@pytest.mark.parametrize("pack", [False, True])
def test_per_process_rows_rebuild_the_single_process_batches(dataset, compact, pack):
    """Two processes' rows, stacked in process order, are the one-process global batches (same
    seed): the global batch does not depend on the process count."""
    data_dir, tok = dataset
    make = lambda **kw: list(
        make_sft_dataset(
            data_dir,
            tok,
            "agent",
            seq_len=1024,
            batch_size=4,
            num_epochs=1,
            pack=pack,
            seed=3,
            **kw,
        )
    )
    whole = make()
    parts = [make(process_index=p, process_count=2) for p in range(2)]
    assert whole and len(parts[0]) == len(parts[1]) == len(whole)
    for g, a, b in zip(whole, *parts):
        assert a["tokens"].shape[0] == b["tokens"].shape[0] == 2
        for k in g:
            np.testing.assert_array_equal(np.concatenate([a[k], b[k]]), g[k])
    with pytest.raises(ValueError, match="not divisible"):
        make_sft_dataset(data_dir, tok, "agent", seq_len=1024, batch_size=3, process_count=2)
