"""Our evaluation as tau2-bench's `Results` file, so tau2's own tools (`tau2 view`, its metrics)
read our runs and the same trajectories can be scored by both sides.

Why a second file beside `results.json`: tau2's schema is what its users and leaderboards read;
ours carries more (second opinions, finish reasons, resumable logs). Every trial becomes one
`SimulationRun` with tau2's message types (the greeting first, as tau2's orchestrator records it),
its termination reason mapped onto tau2's, and the reward in `reward_info`. The transcripts come
from `trajectories.jsonl`, written beside `trials.jsonl` as trials finish.
"""

from __future__ import annotations

import datetime
import json
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from absl import logging

from data_agents import dialogue as protocol

RESULTS_NAME = "tau2_results.json"
TRAJECTORIES_NAME = "trajectories.jsonl"

# our finish reason -> tau2's TerminationReason (limits and refusals are the agent's errors)
TERMINATION = {
    "user_stop": "user_stop",
    "agent_stop": "agent_stop",
    "max_steps": "max_steps",
    "max_errors": "too_many_errors",
    "max_context": "agent_error",
    "turn_truncated": "agent_error",
    "agent_error": "agent_error",
    "user_error": "user_error",
}


def _git_commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            timeout=10,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""


def _messages(transcript: Sequence[dict[str, Any]]):
    from data_agents.domains.tau2_adapter import tau2_message, to_tau2_messages

    body = [m for m in transcript if m["role"] != "system"]
    greeting = tau2_message.AssistantMessage(role="assistant", content=protocol.GREETING)
    return [greeting] + to_tau2_messages(body)


def simulation(trial: dict[str, Any], transcript: Sequence[dict[str, Any]]):
    """One trial record (+ its transcript) as a tau2 `SimulationRun`."""
    from tau2.data_model.simulation import RewardInfo, SimulationRun

    now = datetime.datetime.now().isoformat()
    reason = trial.get("reason")
    return SimulationRun(
        id=f"{trial['task_id']}/{trial['trial']}",
        task_id=str(trial["task_id"]),
        start_time=now,
        end_time=now,
        duration=float(trial.get("seconds", 0.0)),
        termination_reason=TERMINATION.get(trial["finish_reason"], "agent_error"),
        agent_cost=0.0,
        user_cost=0.0,
        trial=int(trial["trial"]),
        seed=trial.get("seed"),
        reward_info=RewardInfo(
            reward=float(trial["reward"]),
            reward_basis=None,
            info={
                "finish_reason": trial["finish_reason"],
                **({"reason": reason} if reason else {}),
            },
        ),
        messages=_messages(transcript),
    )


def to_tau2_results(
    domain,
    tasks: Sequence[Any],
    trials: Sequence[dict[str, Any]],
    transcripts: dict[tuple[str, int], list[dict[str, Any]]],
    *,
    num_trials: int,
    limits: protocol.Limits,
    agent: dict[str, Any],
    user: dict[str, Any],
    seed: int | None = None,
):
    """tau2 `Results` of `trials` (ours, one per (task, trial)) on `tasks`."""
    from tau2.data_model.simulation import AgentInfo, Info, Results, UserInfo
    from tau2.environment.environment import EnvironmentInfo

    from data_agents.domains.tau2_adapter import to_tau2_task

    has_user_tools = bool(domain.make_env().tools_schema("user"))
    info = Info(
        git_commit=_git_commit(),
        num_trials=num_trials,
        max_steps=limits.max_steps,
        max_errors=limits.max_errors,
        seed=seed,
        user_info=UserInfo(
            implementation=str(user.get("kind", "user")),
            llm=user.get("model") or user.get("urls"),
            global_simulation_guidelines=protocol.user_guidelines(domain.name, has_user_tools),
        ),
        agent_info=AgentInfo(
            implementation="eigen-jax", llm=agent.get("llm"), llm_args=agent.get("llm_args")
        ),
        environment_info=EnvironmentInfo(domain_name=domain.name, policy=domain.policy),
    )
    runs = [
        simulation(t, transcripts.get((str(t["task_id"]), int(t["trial"])), [])) for t in trials
    ]
    return Results(info=info, tasks=[to_tau2_task(t) for t in tasks], simulations=runs)


def read_transcripts(out_dir: str | Path) -> dict[tuple[str, int], list[dict[str, Any]]]:
    """(task id, trial) -> transcript, from every `trajectories*.jsonl` under `out_dir`."""
    out: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for path in sorted(Path(out_dir).glob("trajectories*.jsonl")):
        for line in path.read_text().splitlines():
            try:
                t = json.loads(line)
            except json.JSONDecodeError:
                continue  # the torn last line of a crashed run
            out[(str(t["task_id"]), int(t["trial"]))] = t["messages"]
    return out


def write_tau2_results(
    out_dir: str | Path, domain, tasks: Sequence[Any], result: dict[str, Any], **kwargs
) -> Path | None:
    """Write `tau2_results.json` for the trials summarised in `result` (our results.json);
    None (nothing written) without the optional `tau2` package."""
    try:
        import tau2  # noqa: F401
    except ImportError:
        logging.warning("tau2 is not installed (pip install '.[tau2]'): no %s", RESULTS_NAME)
        return None
    trials = [t for per_task in result["tasks"].values() for t in per_task]
    results = to_tau2_results(
        domain, tasks, trials, read_transcripts(out_dir), num_trials=result["num_trials"], **kwargs
    )
    path = Path(out_dir) / RESULTS_NAME
    results.save(path)
    return path
