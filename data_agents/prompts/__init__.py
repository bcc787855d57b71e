"""Agent prompts: shipped templates (`v0/*.md`) and the versioned store the reflection writes."""

from data_agents.prompts.store import (
    AGENTS,
    BASE_VERSION,
    PromptSet,
    PromptStore,
    builtin_templates,
    seed_plans,
)

__all__ = ["AGENTS", "BASE_VERSION", "PromptSet", "PromptStore", "builtin_templates", "seed_plans"]
