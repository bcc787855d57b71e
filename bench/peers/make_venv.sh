#!/usr/bin/env bash
# Create (or reuse) the Tunix peer venv. Tunix pins safetensors<0.8 (and its own jax/flax
# range), so it never shares /work/main/.venv: the peer harness runs in this venv and talks to
# the eigen-jax side only through files (an HF checkpoint in, a JSON result out).
#
#   bench/peers/make_venv.sh [VENV_DIR]     (default ~/.cache/eigen-jax/venv-tunix)
#
# WITH_LIBTPU=1 also installs the libtpu matched to the venv's jax (`jax[tpu]==<its version>`),
# which the deviceless TPU compile (`tunix_compile.py`) needs; nothing else uses it.
set -euo pipefail
VENV="${1:-${TUNIX_VENV:-$HOME/.cache/eigen-jax/venv-tunix}}"
TUNIX_VERSION="${TUNIX_VERSION:-0.1.7}"
PYTHON="${PYTHON:-python3.11}"
if ! { [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import tunix" 2>/dev/null; }; then
  "$PYTHON" -m venv "$VENV"
  "$VENV/bin/pip" install -q --upgrade pip >&2
  "$VENV/bin/pip" install -q "google-tunix==${TUNIX_VERSION}" >&2
  "$VENV/bin/python" -c "import tunix" >&2
fi
if [[ "${WITH_LIBTPU:-0}" == 1 ]] && ! "$VENV/bin/python" -c "import libtpu" 2>/dev/null; then
  JAX_VERSION="$("$VENV/bin/python" -c "import jax; print(jax.__version__)")"
  "$VENV/bin/pip" install -q "jax[tpu]==${JAX_VERSION}" >&2
fi
echo "$VENV"
