"""Dialogue → token ids + loss mask, for agent SFT or user-simulator SFT.

The chat layer renders; this module only chooses the view and the mask:
- objective "agent": the agent's view (policy as system prompt, domain tools); the loss covers the
  assistant's tokens (content, tool-call JSON, end-of-turn), everything else is masked;
- objective "user": the user simulator's role-flipped view (see `eigen_jax.chat.views`); the loss
  covers the user's tokens, which are that view's assistant turns;
- objective "pretrain": the document as it stands (its own system prompt and tool schemas,
  whatever `agent_prompt` mode is bound) with the loss on every token: language modelling over
  the chat template, for the synthetic corpus of the tiny base (`data_agents.pretrain`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

from eigen_jax.chat import views
from eigen_jax.chat.conversation import Conversation, render_dialogue
from eigen_jax.chat.template import ChatTemplate

OBJECTIVES = ("agent", "user", "pretrain")


def render_for_objective(
    chat: ChatTemplate, dialogue: dict[str, Any], objective: str
) -> Conversation:
    if objective == "agent":
        system, tools = views.agent_prompt(dialogue.get("policy", ""), dialogue.get("tools"))
        return render_dialogue(chat, views.agent_messages(dialogue["messages"], system), tools)
    if objective == "user":
        guidelines = views.user_guidelines(dialogue.get("domain", ""), dialogue.get("user_tools"))
        msgs = views.user_messages(dialogue["messages"], dialogue.get("task", {}), guidelines)
        return render_dialogue(chat, msgs, dialogue.get("user_tools") or None)
    if objective == "pretrain":
        system = {"role": "system", "content": dialogue.get("policy", "")}
        body = [m for m in dialogue["messages"] if m["role"] != "system"]
        return render_dialogue(
            chat, [system, *body], views.tools_json(dialogue.get("tools")) or None
        )
    raise ValueError(f"unknown SFT objective {objective!r}; expected one of {OBJECTIVES}")


def tokenize_dialogue(
    chat: ChatTemplate,
    dialogue: dict[str, Any],
    objective: str,
    max_length: int,
    prompt_loss_weight: float = 0.0,
) -> dict[str, np.ndarray]:
    """{"tokens": int32[n], "loss_mask": float32[n]} with n ≤ max_length (the tail is cut).

    `loss_mask` is 1 on the trained role's tokens and `prompt_loss_weight` on every other token
    (0 by default: pure role SFT). A small weight adds a language-modelling signal on the context —
    user turns, tool results (which repeat ids from the calls) — more examples of copying an id
    seen earlier, for a tiny model trained from scratch, at no extra compute. Its effect alone is
    not measured; bench/NOTES.md ("Copying arguments") has the runs that used 0.3.
    """
    if not 0.0 <= prompt_loss_weight < 1.0:
        raise ValueError(f"prompt_loss_weight must be in [0, 1), got {prompt_loss_weight}")
    conv = render_for_objective(chat, dialogue, objective)
    tokens = np.asarray(conv.tokens, np.int32)[:max_length]
    if objective == "pretrain":
        return {"tokens": tokens, "loss_mask": np.ones(len(tokens), np.float32)}
    role = conv.assistant_mask()[:max_length]
    mask = np.where(role, 1.0, prompt_loss_weight).astype(np.float32)
    return {"tokens": tokens, "loss_mask": mask}
