#!/usr/bin/env bash
# The GPU check of issue 12 item 6 on one CUDA GPU, <= ~8 minutes, one JSON of figures on stdout
# (progress on stderr). Run from anywhere:  bash benchmarks/gpu_check.sh [--dry-run] [--only grpo] ...
# PYTHON: the interpreter with saliency-r1 installed (default: .venv/bin/python, else python3).
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
py="${PYTHON:-}"
if [[ -z "$py" ]]; then
  if [[ -x "$root/.venv/bin/python" ]]; then py="$root/.venv/bin/python"; else py="python3"; fi
fi
export PYTHONPATH="$root/src${PYTHONPATH:+:$PYTHONPATH}"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 HF_DATASETS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
exec timeout 540 "$py" "$root/benchmarks/gpu_check.py" "$@"
