"""The EigenData agent hierarchy: meta-planner → task synthesiser → task verifier → dialogue
rollout (user simulator + assistant) → trajectory verifier, and the reflection agent that evolves
the prompts between rounds. `data_agents.synthesis` runs them; each module is usable alone."""

from data_agents.agents.base import Sampling
from data_agents.agents.parsing import (
    StageFailure,
    extract_json,
    parse_model,
    parse_tool_calls,
)
from data_agents.agents.planner import make_plans
from data_agents.agents.reflection import reflect
from data_agents.agents.rollout import Rollout, run_dialogue
from data_agents.agents.task_synth import synthesize_task
from data_agents.agents.task_verify import verify_task
from data_agents.agents.trajectory_verify import verify_trajectory

__all__ = [
    "Rollout",
    "Sampling",
    "StageFailure",
    "extract_json",
    "make_plans",
    "parse_model",
    "parse_tool_calls",
    "reflect",
    "run_dialogue",
    "synthesize_task",
    "verify_task",
    "verify_trajectory",
]
