"""The CPU sglang-jax server set-up of `bench/data_agents_bench.py`: the tiny Qwen3 sized for the
engine's prompts, its tokenizer corpus, the "scripted" variant that answers every prompt with one
fixed JSON text (so every task runs its full chain of dependent requests), and the launch flags.
"""

from __future__ import annotations

import glob
import json
import os
import pathlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The benchmark model: the test fixture's tiny random Qwen3 (2 layers, hidden 128, head_dim 128)
# with room for the engine's prompts. Its BPE tokenizer (vocab 1024) is trained on the fixture
# corpus plus the shipped prompts, policy and tool schemas: ~3.1-3.6 characters per token on
# these prompts, near a production tokenizer, where the test model's 512-token vocab needs ~2.
BENCH_MODEL_SPEC = {"max_position_embeddings": 8192}
BENCH_VOCAB = 1024


def bench_server_flags(concurrency: int, context_length: int) -> dict[str, object]:
    """sglang-jax flags for a CPU benchmark server (merged into the test fixture's TEST_FLAGS).

    Why these: the native attention backend attends every query token to a key buffer padded to
    (batch bucket x max request length), and for prefill to the largest batch bucket — capped by
    the KV pool size. With the defaults (pool = half of host memory, context from the model
    config, up to 4096 running requests) that is hundreds of thousands of padded keys per token
    and sub-1 tok/s on a CPU. So: the context the prompts need, a pool of exactly C requests,
    C running requests, and the few batch/token buckets compiled up front (about a minute on
    CPU) so no compilation lands inside a measured phase.
    """
    buckets = [b for b in (1, 2, 4, 8, 16, 32, 64) if b < concurrency] + [concurrency]
    return {
        "--disable-precompile": None,
        "--skip-server-warmup": True,
        "--context-length": context_length,
        "--max-running-requests": concurrency,
        "--max-total-tokens": concurrency * context_length,
        "--chunked-prefill-size": 2048,
        "--precompile-token-paddings": [256, 512, 1024, 2048],
        "--precompile-bs-paddings": buckets,
    }


def bench_tokenizer_corpus(domain_name: str) -> list[str]:
    from data_agents.domains import load
    from data_agents.prompts import seed_plans
    from tests.fixtures.sglang_server import _CORPUS_LINES

    domain = load(domain_name)
    prompts = sorted(glob.glob(os.path.join(ROOT, "data_agents", "prompts", "v0", "*.md")))
    return (
        list(_CORPUS_LINES)
        + [pathlib.Path(p).read_text(encoding="utf-8") for p in prompts]
        + [
            domain.policy,
            json.dumps(domain.make_env().tools_schema("assistant")),
            json.dumps(seed_plans()),
        ]
    )


# The scripted model's one answer: a single added token whose text is a JSON object that parses as
# a task (synthesiser), a passing task judgement and a trajectory judgement. The planner rejects
# it (no "plans": seed plans are used) and, with no ###STOP###, every dialogue runs the full
# --dialogue_steps, so an instance is 1 synthesis + 1 task-judge + dialogue_steps requests, each
# depending on the previous one, like a real one (but with a 2-token answer).
SCRIPTED_ANSWER = json.dumps(
    {
        "policy_consistent": True,
        "solvable": True,
        "passed": True,
        "attribution": "trajectory",
        "reason": "The request is clear and consistent with the policy.",
        "persona": "A returning customer who prefers short answers.",
        "reason_for_call": "You want to know how long you have to return a rented item.",
        "task_instructions": "Ask the agent about the return window for a rental.",
        "communicate_info": ["returns are accepted"],
        "actions": [],
    },
    sort_keys=True,
)


def build_scripted_model(base_dir: pathlib.Path) -> pathlib.Path:
    """A copy of the random bench model, rewired to answer every prompt with SCRIPTED_ANSWER.

    Why: a random model's output never parses, so every instance dies at its first request and
    the benchmark would never exercise the dependent chain (synthesis → judge → dialogue turns)
    that limits how busy the engine keeps the server. Construction: attention and MLP outputs
    are zeroed (o_proj, down_proj), so the last hidden state is the normalised embedding of the
    current token alone; the untied LM head maps the generation prompt's last token to the
    answer token and the answer token to <|im_end|>. Prefill still runs every layer over the
    whole prompt, so the server's per-request cost keeps its shape.
    """
    import hashlib

    import torch
    from tokenizers import AddedToken
    from transformers import AutoTokenizer, Qwen3ForCausalLM

    digest = hashlib.sha256((base_dir.name + SCRIPTED_ANSWER).encode()).hexdigest()[:12]
    target = base_dir.parent / f"bench-qwen3-scripted-{digest}"
    if (target / "config.json").exists():
        return target.resolve()
    tok = AutoTokenizer.from_pretrained(base_dir)
    tok.add_tokens([AddedToken(SCRIPTED_ANSWER, special=False, normalized=False)])
    answer = tok.convert_tokens_to_ids(SCRIPTED_ANSWER)
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    convs = [
        [{"role": "user", "content": "hi"}],
        [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "a b"}],
    ]
    last = {tok.apply_chat_template(c, tokenize=False, add_generation_prompt=True) for c in convs}
    last_ids = {tok(text)["input_ids"][-1] for text in last}
    if len(last_ids) != 1:
        raise RuntimeError(f"generation prompt does not end in one fixed token: {last_ids}")
    prompt_end = last_ids.pop()
    model = Qwen3ForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    model.resize_token_embeddings(len(tok))
    model.config.tie_word_embeddings = False
    torch.manual_seed(1)
    with torch.no_grad():
        emb = model.model.embed_tokens.weight
        emb.normal_(0.0, 1.0)
        model.lm_head = torch.nn.Linear(emb.shape[1], emb.shape[0], bias=False)
        head = model.lm_head.weight
        head.normal_(0.0, 0.02)
        for src, dst in ((prompt_end, answer), (answer, eos)):
            head[dst] = 2.0 * emb[src] / emb[src].norm()
        for layer in model.model.layers:
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()
    tmp = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    model.save_pretrained(tmp, safe_serialization=True)
    tok.save_pretrained(tmp)
    os.replace(tmp, target)
    return target.resolve()
