#!/usr/bin/env bash
# The one command on a GPU machine:  bash bench/gpu_check/run.sh [DEVICE] [OUT]
# (make gpu-check calls it too; DEVICE=cpu is the tiny dry run CI makes.)
# Missing service/test packages come from .gpu/wheels (bench/gpu_check/prepare.sh) when the
# interpreter lacks them. Results: $OUT (the device tool's folder) when set, else the default
# of python -m bench.gpu_check (bench/results/ on CUDA).
set -euo pipefail
cd "$(dirname "$0")/../.."
DEVICE="${1:-cuda}"
OUT_DIR="${2:-${OUT:-}}"
source bench/gpu_check/env.sh
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null || true
exec $PY -m bench.gpu_check --device "$DEVICE" ${OUT_DIR:+--out "$OUT_DIR"}
