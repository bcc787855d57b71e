"""A tiny SFT'd policy (compact prompt) served by `ModelServer` and called through tau2's own
`generate()` (litellm's OpenAI client): the checkpoint's recorded prompt format makes the server
render the request as in training, and the model's tool call comes back as `tool_calls`.

Independent reference: the same weights decoded greedily in-process on the training render
(`views.agent_messages` + the compact system prompt), parsed by the chat layer.
"""

from __future__ import annotations

import shutil
import types

import pytest

pytest.importorskip("tau2")

from data_agents.domains import tau2_adapter  # noqa: E402,F401  (offline litellm settings)


@pytest.fixture(scope="module")
def compact_checkpoint(tmp_path_factory, policy_hf_dir):
    """The fixture policy (trained with the compact prompt) exported with its prompt format."""
    from eigen_jax.chat import prompt_format

    out = tmp_path_factory.mktemp("compact_ckpt") / "tiny-agent"
    shutil.copytree(policy_hf_dir, out)
    prompt_format.write(out, prompt_format.PromptFormat("compact"))
    return out


def _tool_call_prefix(policy_model, rl_chat, reference_dialogues):
    """The first dialogue prefix (ending before a reference tool call) on which the model's own
    greedy turn, in-process, is a tool call: (prefix messages, the parsed call)."""
    from eigen_jax.chat import views
    from eigen_jax.sampling import SamplingParams, generate

    params = SamplingParams(
        temperature=0.0, max_new_tokens=64, stop_token_ids=tuple(rl_chat.stop_ids)
    )
    for msgs in reference_dialogues:
        for i, m in enumerate(msgs):
            if m["role"] != "assistant" or not m.get("tool_calls"):
                continue
            prefix = [x for x in msgs[:i] if x["role"] != "system"]
            ids = rl_chat.render(
                views.agent_messages(prefix, views.COMPACT_SYSTEM), None, add_generation_prompt=True
            )
            out = generate(policy_model, [ids], params)[0]
            parsed = rl_chat.parse(out.token_ids)
            if parsed.tool_calls and not parsed.errors:
                return prefix, parsed.tool_calls[0]
    pytest.fail("the fixture policy never calls a tool greedily on its training prefixes")


def test_compact_policy_tool_call_round_trips_through_tau2_generate(
    compact_checkpoint, policy_model, rl_chat, reference_dialogues, outfitter
):
    from tau2.data_model.message import AssistantMessage
    from tau2.utils.llm_utils import generate as tau2_generate

    from data_agents.domains.tau2_adapter import to_tau2_messages
    from eigen_jax.serve import BackgroundServer, ModelServer

    prefix, expected = _tool_call_prefix(policy_model, rl_chat, reference_dialogues)
    server = ModelServer.load(str(compact_checkpoint), num_slots=2, max_len=1024, steps_per_sync=4)
    assert server.prompt_format.agent_prompt == "compact"
    tools = [
        types.SimpleNamespace(openai_schema=s)  # what tau2's generate reads of a Tool
        for s in outfitter.make_env().tools_schema("assistant")
    ]
    with BackgroundServer(server) as background:
        # tau2 sends the full policy and every tool schema; the server renders the compact
        # prompt the model was trained with
        messages = to_tau2_messages([{"role": "system", "content": outfitter.policy}] + prefix)
        reply = tau2_generate(
            model=f"openai/{server.model_name}",
            messages=messages,
            tools=tools,
            api_base=f"{background.url}/v1",
            api_key="EMPTY",
            temperature=0.0,
            max_tokens=64,
            num_retries=0,
        )
    assert isinstance(reply, AssistantMessage) and reply.tool_calls
    call = reply.tool_calls[0]
    assert (call.name, call.arguments) == (expected.name, expected.arguments)
    assert call.id  # litellm/tau2 need ids to answer the call


@pytest.mark.slow  # starts a server and plays two tau2 airline simulations on CPU
def test_tau2_run_against_launch_serve(compact_checkpoint, tmp_path):
    """tau2's own runner, unmodified (`tau2 run`, litellm client), against launch/serve.py on
    2 airline tasks x 1 trial; the user LLM is the same server. The score does not matter: the
    run completes with a results file, every simulation ends without a protocol error."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    from tau2.data_model.simulation import Results

    from tests.fixtures.launch_serve import launched_server

    tau2 = Path(sys.executable).with_name("tau2")
    with launched_server(compact_checkpoint, "--num_slots", "4") as url:
        args = json.dumps({"api_base": f"{url}/v1", "temperature": 0.0, "max_tokens": 48})
        run = subprocess.run(
            [
                str(tau2),
                "run",
                "--domain",
                "airline",
                "--num-trials",
                "1",
                "--num-tasks",
                "2",
                "--agent-llm",
                "openai/tiny-agent",
                "--agent-llm-args",
                args,
                "--agent-api-key",
                "EMPTY",
                "--user-llm",
                "openai/tiny-agent",
                "--user-llm-args",
                args,
                "--user-api-key",
                "EMPTY",
                "--max-steps",
                "12",
                "--max-concurrency",
                "2",
                "--results-dir",
                str(tmp_path),
                "--save-to",
                "run",
            ],
            capture_output=True,
            text=True,
            timeout=900,
        )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = Results.load(tmp_path / "run.json")
    assert len(results.simulations) == 2
    assert all(
        s.termination_reason.value in ("user_stop", "agent_stop", "max_steps")
        for s in results.simulations
    ), [s.termination_reason for s in results.simulations]
    # our checker on the trajectories tau2's runner played gives tau2's rewards (pass^1 equal)
    from data_agents.checkers import check
    from data_agents.domains import load
    from data_agents.domains.tau2_adapter import from_tau2_messages

    airline = load("tau2:airline")
    tasks = {t.id: t for t in airline.tasks("base")}
    for sim in results.simulations:
        messages = from_tau2_messages(sim.messages)
        env = airline.make_env(tasks[sim.task_id])
        for m in messages:
            for c in m.get("tool_calls") or []:
                env.call(c["name"], c["arguments"], m["role"])
        ours = (
            check(airline, tasks[sim.task_id], env, messages).reward
            if sim.termination_reason.value in ("user_stop", "agent_stop")
            else 0.0
        )
        assert ours == sim.reward_info.reward


@pytest.mark.slow  # one server, a short served evaluation per tau2 domain on CPU
def test_launch_eval_on_every_tau2_domain_writes_what_tau2_scores_alike(
    compact_checkpoint, tmp_path
):
    """`launch/eval.py --agent_url` (the tiny agent served, the same server as the user) on each
    tau2 domain: the run completes, and tau2's data model, metrics and evaluator on the saved
    `tau2_results.json` give our pass^1 and our per-trial rewards."""
    import json
    import subprocess
    import sys

    from tau2.data_model.simulation import Results
    from tau2.evaluator.evaluator import EvaluationType, evaluate_simulation
    from tau2.metrics.agent_metrics import compute_metrics

    from data_agents.domains import load
    from data_agents.domains.tau2_adapter import to_tau2_task
    from tests.fixtures.launch_serve import ENV, REPO, launched_server

    with launched_server(compact_checkpoint, "--num_slots", "4") as url:
        for name in ("airline", "retail", "telecom"):
            out = tmp_path / name
            run = subprocess.run(
                [
                    sys.executable,
                    str(REPO / "launch" / "eval.py"),
                    "--agent_url",
                    url,
                    "--user_url",
                    url,
                    "--domain",
                    f"tau2:{name}",
                    "--split",
                    "test",
                    "--max_tasks",
                    "2",
                    "--num_trials",
                    "1",
                    "--max_steps",
                    "10",
                    "--output_dir",
                    str(out),
                    "--concurrency",
                    "4",
                ],
                cwd=REPO,
                env=ENV,
                capture_output=True,
                text=True,
                timeout=600,
            )
            assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-3000:]
            ours = json.loads((out / "results.json").read_text())
            results = Results.load(out / "tau2_results.json")
            assert len(results.simulations) == 2
            assert compute_metrics(results).pass_hat_ks[1] == pytest.approx(ours["pass^k"]["1"])
            tasks = {t.id: to_tau2_task(t) for t in load(f"tau2:{name}").tasks("test")}
            for sim in results.simulations:
                reward = evaluate_simulation(
                    sim, tasks[sim.task_id], EvaluationType.ALL, solo_mode=False, domain=name
                ).reward
                assert reward == sim.reward_info.reward
