"""RL fixtures: the outfitter domain, a tiny tokenizer trained on its reference dialogues, and a
tiny policy briefly fine-tuned on those dialogues (compact agent prompt) so that it ends its
turns with the end-of-turn id and sometimes calls tools — a random model never would, and every
episode would be one truncated turn."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

SFT_STEPS = 80
SFT_LEN = 384
SFT_DIALOGUES = 8


@pytest.fixture(scope="session")
def outfitter():
    from data_agents import domains

    return domains.load("outfitter", n_train=24, n_test=4)


@pytest.fixture(scope="session")
def reference_dialogues(outfitter):
    from data_agents.domains.outfitter.dialogue import run_reference_dialogue

    return [run_reference_dialogue(outfitter, t)["messages"] for t in outfitter.tasks("train")]


@pytest.fixture(scope="session")
def rl_tokenizer_dir(tmp_path_factory, outfitter, reference_dialogues):
    from eigen_jax.chat.tiny_tokenizer import train_tiny_tokenizer

    texts = [outfitter.policy] + [
        str(m.get("content") or "") + str(m.get("tool_calls") or "")
        for d in reference_dialogues
        for m in d
    ]
    out = tmp_path_factory.mktemp("rl_tokenizer")
    train_tiny_tokenizer(texts, vocab_size=512, output_dir=out)
    return out


@pytest.fixture(scope="session")
def rl_chat(rl_tokenizer_dir):
    from eigen_jax.chat.template import ChatTemplate

    return ChatTemplate.from_pretrained(rl_tokenizer_dir)


def compact_prompt(outfitter):
    from eigen_jax.chat import views

    return views.agent_prompt(
        outfitter.policy, outfitter.make_env().tools_schema("assistant"), mode="compact"
    )


@pytest.fixture(scope="session")
def policy_model(rl_chat, outfitter, reference_dialogues):
    """Tiny qwen3 policy after a short agent-SFT on the reference dialogues."""
    from eigen_jax.chat import views
    from eigen_jax.chat.conversation import render_dialogue
    from eigen_jax.models import Transformer, get_config

    system, tools = compact_prompt(outfitter)
    rows, masks = [], []
    for msgs in reference_dialogues[:SFT_DIALOGUES]:
        conv = render_dialogue(rl_chat, views.agent_messages(msgs, system), tools)
        ids, mask = np.asarray(conv.tokens[:SFT_LEN]), conv.assistant_mask()[:SFT_LEN]
        rows.append(np.pad(ids, (0, SFT_LEN - len(ids))))
        masks.append(np.pad(mask, (0, SFT_LEN - len(mask))))
    tokens, mask = jnp.asarray(np.stack(rows)), jnp.asarray(np.stack(masks), jnp.float32)
    model = Transformer(
        get_config("tiny-qwen3", vocab_size=len(rl_chat.tokenizer), max_position_embeddings=4096),
        rngs=nnx.Rngs(0),
    )
    opt = nnx.Optimizer(model, optax.adam(5e-3), wrt=nnx.Param)

    @nnx.jit
    def step(model, opt, tokens, mask):
        def loss_fn(m):
            logp = jax.nn.log_softmax(m(tokens[:, :-1]))
            picked = jnp.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]
            return -(picked * mask[:, 1:]).sum() / mask[:, 1:].sum()

        loss, grads = nnx.value_and_grad(loss_fn)(model)
        opt.update(model, grads)
        return loss

    for _ in range(SFT_STEPS):
        step(model, opt, tokens, mask)
    return model


@pytest.fixture(scope="session")
def policy_hf_dir(tmp_path_factory, policy_model, rl_tokenizer_dir):
    import shutil

    from eigen_jax import models

    out = tmp_path_factory.mktemp("policy_hf")
    models.save_pretrained(policy_model, policy_model.config, str(out))
    for f in rl_tokenizer_dir.iterdir():
        shutil.copy(f, out / f.name)
    return out
