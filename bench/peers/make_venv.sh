#!/usr/bin/env bash
# Create (or reuse) the Tunix peer venv. Tunix pins safetensors<0.8 (and its own jax/flax
# range), so it never shares /work/main/.venv: the peer harness runs in this venv and talks to
# the eigen-jax side only through files (an HF checkpoint in, a JSON result out).
#
#   bench/peers/make_venv.sh [VENV_DIR]     (default ~/.cache/eigen-jax/venv-tunix)
set -euo pipefail
VENV="${1:-${TUNIX_VENV:-$HOME/.cache/eigen-jax/venv-tunix}}"
TUNIX_VERSION="${TUNIX_VERSION:-0.1.7}"
PYTHON="${PYTHON:-python3.11}"
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c "import tunix" 2>/dev/null; then
  echo "$VENV"
  exit 0
fi
"$PYTHON" -m venv "$VENV"
"$VENV/bin/pip" install -q --upgrade pip >&2
"$VENV/bin/pip" install -q "google-tunix==${TUNIX_VERSION}" >&2
"$VENV/bin/python" -c "import tunix" >&2
echo "$VENV"
