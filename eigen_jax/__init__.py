"""eigen-jax: a JAX/Flax learner that post-trains multi-turn, tool-using LLM agents
(agent SFT, user-simulator SFT, GRPO), samples and serves them."""

__version__ = "0.2.0"
