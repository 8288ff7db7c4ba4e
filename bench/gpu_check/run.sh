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
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
if ! $PY -c "import fastapi, uvicorn, pydantic_settings, multipart, pytest, pytest_timeout" 2>/dev/null; then
  if ! compgen -G ".gpu/wheels/*.whl" >/dev/null; then
    echo "run.sh: error: fastapi/uvicorn/pytest missing and no .gpu/wheels:" \
         "run bench/gpu_check/prepare.sh where PyPI is reachable, and carry .gpu" >&2
    exit 2
  fi
  [ -d .gpu/site ] || $PY -m pip install -q --no-index --no-deps -t .gpu/site .gpu/wheels/*.whl
  export PYTHONPATH="$PWD/.gpu/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null || true
exec $PY -m bench.gpu_check --device "$DEVICE" ${OUT_DIR:+--out "$OUT_DIR"}
