#!/usr/bin/env bash
# A recipe sweep on a GPU machine:  bash bench/gpu_check/sweep.sh PLAN [training sweep options]
# e.g. issue 15's (docs/emoji.md, "A recipe search on a GPU"), in one device call that carries
# the wheels (bench/gpu_check/prepare.sh) and the data the plan reads:
#     run(command="bash bench/gpu_check/sweep.sh training/sweeps/emoji-gpu.toml --parallel 4 --deadline-minutes 7",
#         carry=[".gpu", "data/emoji"], timeout_s=600)
# The table, the JSON and each run's log go to $OUT/sweep when OUT is set (the device tool's
# folder); the runs' weights stay on the machine (runs/sweeps/store), too large to bring back.
set -euo pipefail
cd "$(dirname "$0")/../.."
[ $# -ge 1 ] || { echo "usage: bash bench/gpu_check/sweep.sh PLAN [training sweep options]" >&2; exit 2; }
PLAN="$1"
shift
source bench/gpu_check/env.sh
nvidia-smi --query-gpu=name,memory.used,memory.total --format=csv 2>/dev/null || true
exec $PY -m training sweep "$PLAN" --store runs/sweeps/store ${OUT:+--out "$OUT/sweep"} "$@"
