"""KV-cache sampling: logit processing, batched prefill/decode kernels, a continuous-batching
engine for multi-turn rollouts (requests and completions in `requests`), and `generate` for static
batches."""

from eigen_jax.sampling.engine import Completion, Engine, Request
from eigen_jax.sampling.generate import generate
from eigen_jax.sampling.params import SamplingParams
from eigen_jax.sampling.sample import row_keys, sample_tokens, sampling_logprobs

__all__ = [
    "Completion",
    "Engine",
    "Request",
    "SamplingParams",
    "generate",
    "row_keys",
    "sample_tokens",
    "sampling_logprobs",
]
