"""Exports declare the chat template's end of turn as eos: transformers' own `generate` on an
exported tiny model stops at `<|im_end|>`.

The model is the project's tiny Qwen3 exported by `export_pretrained`, then taught in torch (a few
dozen Adam steps) to answer a fixed prompt with a fixed reply ending in `<|im_end|>`, so greedy
decoding reaches `<|im_end|>` after several ordinary tokens. Whether it stops there depends only on
the exported config: the control run with eos set to an id the model never emits keeps going.
"""

import json

import pytest

torch = pytest.importorskip("torch")


@pytest.fixture(scope="module")
def exported(tiny_tokenizer_dir, tmp_path_factory):
    from transformers import AutoTokenizer

    from eigen_jax import sharding as shd
    from eigen_jax.train.loop import export_pretrained
    from eigen_jax.train.model_init import init_model

    vocab = len(AutoTokenizer.from_pretrained(tiny_tokenizer_dir))
    model, config = init_model(
        shd.make_mesh((1, -1, 1)),
        preset="tiny-qwen3",
        vocab_size=vocab,
        config_overrides={"max_position_embeddings": 512},
    )
    assert config.eos_token_id not in range(vocab)  # the preset's Qwen3 id, useless here
    out = tmp_path_factory.mktemp("export") / "hf"
    export_pretrained(model, config, out, str(tiny_tokenizer_dir))
    return out


def test_config_and_generation_config_name_the_end_of_turn(exported):
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(exported)
    im_end, pad = tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    config = json.loads((exported / "config.json").read_text())
    generation = json.loads((exported / "generation_config.json").read_text())
    for d in (config, generation):
        assert d["eos_token_id"] == im_end and d["pad_token_id"] == pad


def test_transformers_generate_stops_at_im_end(exported):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(exported)
    model = AutoModelForCausalLM.from_pretrained(exported, dtype=torch.float32)
    prompt = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, tokenize=False
    )
    prompt_ids = tok(prompt, add_special_tokens=False)["input_ids"]
    reply_ids = tok("Hello there, how can I help?<|im_end|>", add_special_tokens=False)["input_ids"]
    im_end = tok.convert_tokens_to_ids("<|im_end|>")
    assert reply_ids[-1] == im_end and im_end not in reply_ids[:-1] and len(reply_ids) >= 4

    ids = torch.tensor([prompt_ids + reply_ids])
    labels = ids.clone()
    labels[0, : len(prompt_ids)] = -100
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    model.train()
    for _ in range(80):
        loss = model(input_ids=ids, labels=labels).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()

    x = torch.tensor([prompt_ids])
    with torch.no_grad():
        new = model.generate(
            x, attention_mask=torch.ones_like(x), max_new_tokens=40, do_sample=False
        )[0, len(prompt_ids) :].tolist()
        control = model.generate(
            x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=40,
            do_sample=False,
            eos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        )[0, len(prompt_ids) :].tolist()
    assert new == reply_ids, tok.decode(new)  # the reply, then nothing after <|im_end|>
    assert control[: len(reply_ids)] == reply_ids and len(control) == 40


def test_qwen3_tokenizers_declare_end_of_turn_first(qwen3_tokenizer_dir, tmp_path):
    """The released Qwen3 tokenizer (eos `<|im_end|>`), and the same made a base tokenizer (eos
    `<|endoftext|>`, as Qwen3 base models ship): `<|im_end|>` is declared either way, first."""
    import shutil

    from transformers import AutoTokenizer

    from eigen_jax.chat.generation_config import stop_and_pad_ids

    tok = AutoTokenizer.from_pretrained(qwen3_tokenizer_dir)
    im_end, eot = tok.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert stop_and_pad_ids(qwen3_tokenizer_dir) == {
        "eos_token_id": im_end,
        "pad_token_id": eot,
        "bos_token_id": None,
    }
    base = shutil.copytree(qwen3_tokenizer_dir, tmp_path / "base")
    cfg = json.loads((base / "tokenizer_config.json").read_text())
    (base / "tokenizer_config.json").write_text(json.dumps({**cfg, "eos_token": "<|endoftext|>"}))
    assert stop_and_pad_ids(base)["eos_token_id"] == [im_end, eot]
