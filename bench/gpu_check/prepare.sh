#!/usr/bin/env bash
# Run HERE (a machine with PyPI and the project's .venv), once, before a GPU session.
#
# The GPU machine has python3 + torch (CUDA), numpy, pillow, safetensors, prometheus-client,
# httpx, scikit-learn, tqdm, but no fastapi/starlette/uvicorn/pydantic(-settings)/multipart
# and no pytest, and cannot reach a registry (../shared/GPU.md). This downloads those as
# wheels for CPython 3.12 / manylinux x86_64, pinned to the versions in .venv (so pydantic and
# pydantic-core match), into .gpu/wheels (git-ignored through .git/info/exclude). Then, in ONE
# device call that carries them:
#     run(command="bash bench/gpu_check/run.sh", carry=[".gpu"], timeout_s=560)
# run.sh installs them into .gpu/site, runs the check, and writes its JSON + Markdown to $OUT.
set -euo pipefail
cd "$(dirname "$0")/../.."
PIP=.venv/bin/pip
PACKAGES="fastapi starlette uvicorn pydantic pydantic-core pydantic-settings python-dotenv
annotated-types annotated-doc typing-inspection typing-extensions python-multipart click h11
anyio idna sniffio psutil pytest pluggy iniconfig packaging pytest-timeout"
pins=()
for name in $PACKAGES; do
  pin=$($PIP freeze | grep -i "^${name//-/[-_]}==" || true)
  if [ -n "$pin" ]; then pins+=("$pin"); else echo "prepare.sh: $name not in .venv, skipped" >&2; fi
done
exclude=$(git rev-parse --git-path info/exclude)
grep -qxF /.gpu/ "$exclude" 2>/dev/null || echo /.gpu/ >> "$exclude"
mkdir -p .gpu/wheels
$PIP download --quiet -d .gpu/wheels --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 --platform any \
  --no-deps "${pins[@]}"
ls .gpu/wheels
