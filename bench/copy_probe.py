"""Does an agent checkpoint copy tool arguments from the conversation? A teacher-forced probe.

Usage: python bench/copy_probe.py --checkpoint WORKDIR/sft_agent/hf --data_dir WORKDIR/data/tfds
                                  [--dialogues 30] [--seq_len 1024] [--prompt_mode compact]
                                  [--objective agent|pretrain]

`--objective pretrain` renders each document as pretraining saw it (its own system prompt and
tool schemas): the probe of a base model on the synthetic corpus' held-out split
(`gin/tiny_base.gin`'s `WORKDIR/pretrain_data/tfds`).

Why: a tool-using agent must copy names, zips, ids and dates from the user's and the tools'
messages into its calls. A model trained from scratch can lower its SFT loss a long way while
predicting those values from their training-set prior instead (every templated token near
probability 1, every copied value at ~1/|entity set|), and then no write task ever succeeds and
GRPO sees no reward variance on them. The loss alone does not show which; this probe does.

On held-out reference dialogues it scores, teacher-forced, the assistant's tokens in two classes:
*copy tokens* (`copy_positions`: an entity-like token the conversation already showed in a user
or tool message, that the system prompt and tool schemas do not contain and that occurs in at most
`--max_doc_freq` of the probed dialogues, e.g. a name or a street number) and all other
assistant tokens; it prints mean probability and top-1 accuracy of each.
"""

from __future__ import annotations

import argparse
import json

import numpy as np


def copy_positions(
    tokens: np.ndarray, assistant: np.ndarray, context: np.ndarray, prompt_ids: set[int], is_entity
) -> np.ndarray:
    """Bool [T]: assistant tokens that repeat an entity-like id seen earlier in `context`.

    tokens [T] ids; assistant [T] bool (trained positions); context [T] bool (user and tool
    message tokens); prompt_ids: ids of the system prompt and tool schemas (templated words such
    as "address" occur there, names and ids do not); is_entity(id) -> bool.
    """
    seen: set[int] = set()
    out = np.zeros(len(tokens), bool)
    for t, tok in enumerate(tokens.tolist()):
        if assistant[t] and tok in seen and tok not in prompt_ids and is_entity(tok):
            out[t] = True
        if context[t]:
            seen.add(tok)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--checkpoint", required=True, help="HF directory of the agent")
    ap.add_argument("--data_dir", required=True, help="TFDS data_dir of eigen_dialogues")
    ap.add_argument("--split", default="test")
    ap.add_argument("--dialogues", type=int, default=30)
    ap.add_argument("--seq_len", type=int, default=1024)
    ap.add_argument("--prompt_mode", default="compact", help="agent_prompt.mode of the SFT run")
    ap.add_argument("--objective", default="agent", choices=["agent", "pretrain"])
    ap.add_argument(
        "--max_doc_freq",
        type=float,
        default=0.2,
        help="copy tokens: ids in at most this fraction of the dialogues' contexts",
    )
    args = ap.parse_args()

    import gin
    import jax
    import jax.numpy as jnp

    from eigen_jax import models
    from eigen_jax.chat import views
    from eigen_jax.chat.conversation import Origin
    from eigen_jax.chat.template import ChatTemplate
    from eigen_jax.data.dialogues import decode_example, dialogue_source
    from eigen_jax.data.tokenize import render_for_objective

    gin.bind_parameter("agent_prompt.mode", args.prompt_mode)
    model, _ = models.from_pretrained(args.checkpoint)
    chat = ChatTemplate.from_pretrained(args.checkpoint)

    def is_entity(i: int) -> bool:  # a word or number of 2+ characters, not punctuation
        s = chat.decode([i]).strip()
        return len(s) >= 2 and s.replace(".", "").isalnum()

    forward = jax.jit(lambda ids: jax.nn.log_softmax(model(ids).astype(jnp.float32), -1))
    src = dialogue_source(args.data_dir, args.split)
    convs = []
    for i in range(min(args.dialogues, len(src))):
        d = decode_example(src[i])
        conv = render_for_objective(chat, d, args.objective)
        if args.objective == "agent":
            system, tools = views.agent_prompt(d.get("policy", ""), d.get("tools"))
        else:
            system, tools = d.get("policy", ""), views.tools_json(d.get("tools")) or None
        tokens = np.asarray(conv.tokens, np.int32)[: args.seq_len]
        origin = np.asarray(conv.origins)[: len(tokens)]
        convs.append(
            (tokens, origin, set(chat.render([{"role": "system", "content": system}], tools)))
        )
    # Entity ids are rare across dialogues (a name, a street number); "2025", "mail" or a month
    # recur in most and are predictable without looking back.
    df: dict[int, int] = {}
    for tokens, origin, _ in convs:
        for tok in set(tokens[np.isin(origin, [Origin.USER, Origin.TOOL])].tolist()):
            df[tok] = df.get(tok, 0) + 1
    rare = lambda i: df.get(i, 0) <= args.max_doc_freq * len(convs) and is_entity(i)
    stats = {"copy": [], "other": []}
    for tokens, origin, prompt_ids in convs:
        assistant = origin == Origin.ASSISTANT
        copy = copy_positions(
            tokens, assistant, np.isin(origin, [Origin.USER, Origin.TOOL]), prompt_ids, rare
        )
        # right-padded to one length: one compiled program; causal, so padding changes nothing
        padded = np.zeros((1, args.seq_len), np.int32)
        padded[0, : len(tokens)] = tokens
        lp = np.asarray(forward(jnp.asarray(padded))[0, : len(tokens) - 1])
        target = tokens[1:]
        prob = np.exp(lp[np.arange(len(target)), target])
        top1 = lp.argmax(-1) == target
        for name, sel in (("copy", copy[1:]), ("other", assistant[1:] & ~copy[1:])):
            stats[name] += list(zip(prob[sel], top1[sel]))
    rows = {
        k: {
            "tokens": len(v),
            "mean_prob": float(np.mean([p for p, _ in v])) if v else None,
            "top1": float(np.mean([a for _, a in v])) if v else None,
        }
        for k, v in stats.items()
    }
    print(f"{'assistant tokens':<20}{'count':>8}{'mean p':>9}{'top-1':>8}")
    for k, r in rows.items():
        print(f"{k:<20}{r['tokens']:>8}{r['mean_prob'] or 0:>9.3f}{r['top1'] or 0:>8.3f}")
    print(json.dumps({"checkpoint": args.checkpoint, **rows}))


if __name__ == "__main__":
    main()
