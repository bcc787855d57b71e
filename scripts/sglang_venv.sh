#!/usr/bin/env bash
# Create (idempotently) the Python 3.12 venv that runs the sglang-jax inference server.
#
# Why a separate venv: sglang-jax pins its own jax/flax/transformers versions and needs
# Python >= 3.12, while eigen-jax's .venv is Python 3.11; the two only talk over HTTP.
#
# Usage: scripts/sglang_venv.sh            # prints the venv path on the last line of stdout
# Env:   EIGEN_SGLANG_VENV     venv location (default $HOME/.cache/eigen-jax/venv-sglang-jax)
#        EIGEN_SGLANG_SPEC     pip requirement (default sglang-jax[cpu]==0.1.0rc0)
#        EIGEN_SGLANG_PYTHON   interpreter to create it with (default python3.12, pyenv 3.12.1)
set -euo pipefail

VENV="${EIGEN_SGLANG_VENV:-$HOME/.cache/eigen-jax/venv-sglang-jax}"
SPEC="${EIGEN_SGLANG_SPEC:-sglang-jax[cpu]==0.1.0rc0}"
PYTHON="${EIGEN_SGLANG_PYTHON:-python3.12}"
STAMP="$VENV/.eigen-sglang-stamp"

# The stamp records exactly what was installed; a changed spec triggers a re-install.
if [[ -f "$STAMP" && "$(cat "$STAMP")" == "$SPEC" && -x "$VENV/bin/python" ]]; then
  echo "$VENV"
  exit 0
fi

if [[ ! -x "$VENV/bin/python" ]]; then
  mkdir -p "$(dirname "$VENV")"
  PYENV_VERSION="${PYENV_VERSION:-3.12.1}" "$PYTHON" -m venv "$VENV"
fi

"$VENV/bin/python" -m pip install --quiet --upgrade pip >&2
"$VENV/bin/python" -m pip install --quiet "$SPEC" >&2
# Importing the launcher proves the install is usable before we stamp it.
JAX_PLATFORMS=cpu "$VENV/bin/python" -c "import sgl_jax.launch_server" >&2

printf '%s' "$SPEC" > "$STAMP"
echo "$VENV"
