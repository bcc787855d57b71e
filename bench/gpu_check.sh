#!/usr/bin/env bash
# One prepared GPU check (issue 22): cuDNN vs XLA training attention, decode, MFU, and Tunix beside
# them when its venv is there. Sized for about 10 minutes on one H100/H200, run from the repo
# root on a fresh GPU host that has a copy of the repo and no network (nothing is installed).
#
#   bench/gpu_check.sh [--out DIR]         on the GPU host
#   bench/gpu_check.sh --dry [--out DIR]   anywhere, on the CPU: the same python steps, tiny sizes
#
# Python (the first that qualifies): $PYTHON; .venv-gpu/bin/python (`make venv-gpu`: jax[cuda12]
# matched to the CPU venv's jax, built where there is network and carried over); .venv/bin/python
# or python3 when their jax sees a GPU. Modules it lacks may come as wheels in $WHEELS (default
# .whl/), put on PYTHONPATH with `pip install --no-index --no-deps --target`.
# Tunix beside eigen-jax when $TUNIX_VENV (default ~/.cache/eigen-jax/venv-tunix, made by
# bench/peers/make_venv.sh where there is network) imports tunix; else eigen-jax alone, and then
# eigen-jax may take 90% of the GPU memory (XLA_PYTHON_CLIENT_MEM_FRACTION) instead of 45%.
#
# Steps, each under its own time limit (seconds: T_TESTS, T_COMPARE, T_TRAIN) so that one stall
# leaves the others their time:
#   1. tests/eigen_jax/models/test_cudnn_attention.py -k "on_gpu or lowers": the cuDNN kernel vs
#      the XLA path (forward, gradients, a bf16 model's loss and gradients) and the CUDA lowering;
#   2. bench/compare_tunix.py --config gpu-1b --metrics train,decode --attention_impls cudnn,xla:
#      the ~1B bf16 train step under each attention on the same weights, decode, a bf16 matmul
#      rate measured in the same run, MFU = model FLOP/s / that rate (for Tunix too);
#   3. bench/train_bench.py bench-100m, 2048 tokens, bf16, cudnn vs xla, padded vs packed rows
#      (packed rows are what cuDNN's ragged layout exists for).
# Output in DIR (default bench/results/gpu_check-<UTC time>): env.txt, <step>.log, the JSON of
# steps 2-3 and summary.json (every step's exit status and seconds, the two tables).
set -uo pipefail
cd "$(dirname "$0")/.."
DRY=0
OUT_DIR="bench/results/gpu_check-$(date -u +%Y%m%dT%H%M%SZ)"
while [[ $# -gt 0 ]]; do
  case "$1" in
    --dry) DRY=1; shift ;;
    --out) OUT_DIR="$2"; shift 2 ;;
    *) echo "usage: $0 [--dry] [--out DIR]" >&2; exit 2 ;;
  esac
done
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 TF_CPP_MIN_LOG_LEVEL=2

sees_gpu() { command -v "$1" >/dev/null && JAX_PLATFORMS=cuda "$1" -c \
  'import jax, sys; sys.exit(jax.default_backend() != "gpu")' 2>/dev/null; }

if [[ $DRY == 1 ]]; then
  PY="${PYTHON:-.venv/bin/python}"; export JAX_PLATFORMS=cpu
else
  PY="" CANDIDATES="${PYTHON:-.venv-gpu/bin/python .venv/bin/python python3}"
  for cand in $CANDIDATES; do
    [[ -z "$PY" ]] && sees_gpu "$cand" && PY="$cand"
  done
  [[ -n "$PY" ]] || { echo "no python whose jax sees a GPU; tried: $CANDIDATES" >&2; exit 1; }
  export JAX_PLATFORMS=cuda
fi
NEEDED='import flax, optax, gin, pydantic, safetensors, yaml, treescope, msgpack, etils'
WHEELS="${WHEELS:-.whl}"
if ! "$PY" -c "$NEEDED" 2>/dev/null && compgen -G "$WHEELS/*.whl" >/dev/null; then
  SITE="${TMPDIR:-/tmp}/eigen-jax-site"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl
  export PYTHONPATH="$PYTHONPATH:$SITE"
fi
"$PY" -c "$NEEDED" || { echo "$PY lacks modules eigen-jax needs (see above)" >&2; exit 1; }
mkdir -p "$OUT_DIR"

TUNIX_VENV="${TUNIX_VENV:-$HOME/.cache/eigen-jax/venv-tunix}"
TUNIX=(--no_tunix)
if [[ $DRY == 0 ]] && "$TUNIX_VENV/bin/python" -c "import tunix" 2>/dev/null; then
  TUNIX=(--venv "$TUNIX_VENV"); T_COMPARE="${T_COMPARE:-450}"  # the Tunix side: ~12 min in all
else
  export XLA_PYTHON_CLIENT_MEM_FRACTION="${XLA_PYTHON_CLIENT_MEM_FRACTION:-0.90}"
fi

{ date -u; echo "python: $PY  dry: $DRY  tunix: ${TUNIX[*]}"; command -v nvidia-smi >/dev/null \
    && nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv
  "$PY" - <<'EOF'
import jax
d = jax.devices()[0]
print("jax", jax.__version__, "|", d.platform, d.device_kind,
      "| compute capability", getattr(d, "compute_capability", None))
try:
    from jax._src.lib import cuda_versions
    print("cuDNN", cuda_versions.cudnn_get_version() if cuda_versions else None)
except Exception as e:  # a CPU jaxlib has no CUDA version table
    print("cuDNN: n/a", type(e).__name__)
EOF
} 2>&1 | tee "$OUT_DIR/env.txt"

declare -A STATUS SECONDS_TAKEN
run_step() {  # name, time limit, command...
  local name="$1" limit="$2" start=$SECONDS
  shift 2
  echo "=== $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$OUT_DIR/$name.log"
  STATUS[$name]=${PIPESTATUS[0]}
  SECONDS_TAKEN[$name]=$((SECONDS - start))
  echo "=== $name: exit ${STATUS[$name]} after ${SECONDS_TAKEN[$name]}s"
}

if [[ $DRY == 1 ]]; then
  COMPARE=(--config cpu --models tiny-qwen3 --attention_impls xla,auto --repeats 1)
  TRAIN=(--presets tiny-qwen3 --seq 128 --batch 2 --steps 1 --attention_impls xla,auto)
else
  COMPARE=(--config gpu-1b --attention_impls cudnn,xla --repeats 3)
  TRAIN=(--presets bench-100m --seq 2048 --batch 4 --steps 3 --attention_impls cudnn,xla)
fi
run_step tests "${T_TESTS:-100}" "$PY" -m pytest -q -p no:cacheprovider \
  tests/eigen_jax/models/test_cudnn_attention.py -k "on_gpu or lowers"
run_step compare_tunix "${T_COMPARE:-300}" "$PY" bench/compare_tunix.py "${COMPARE[@]}" \
  --metrics train,decode "${TUNIX[@]}" --out "$OUT_DIR/compare_tunix.json"
run_step train_bench "${T_TRAIN:-150}" "$PY" bench/train_bench.py "${TRAIN[@]}" \
  --dtype bfloat16 --out "$OUT_DIR/train_bench.json"

STEPS_JSON="{"
for name in tests compare_tunix train_bench; do
  STEPS_JSON+="\"$name\": {\"exit\": ${STATUS[$name]}, \"s\": ${SECONDS_TAKEN[$name]}},"
done
STEPS_JSON="${STEPS_JSON%,}}"
"$PY" - "$OUT_DIR" "$STEPS_JSON" <<'EOF'
import json, os, sys
out_dir, steps = sys.argv[1], json.loads(sys.argv[2])
summary = {"steps": steps}
for name, key in (("compare_tunix", "table"), ("train_bench", "results")):
    path = os.path.join(out_dir, f"{name}.json")
    if os.path.exists(path):
        with open(path) as f:
            data = json.load(f)
        summary[name] = {k: data.get(k) for k in ("device", "matmul_peak_flops", "peak_flops",
                                                  key) if k in data}
with open(os.path.join(out_dir, "summary.json"), "w") as f:
    json.dump(summary, f, indent=1)
print("steps:", json.dumps(steps))
EOF
echo "results in $OUT_DIR"
for name in tests compare_tunix train_bench; do [[ ${STATUS[$name]} == 0 ]] || exit 1; done
