# Sourced by run.sh and sweep.sh (bash, from the repository root): sets PY to the interpreter and
# PYTHONPATH to this checkout, plus .gpu/site with the service/test packages the GPU machine's
# interpreter lacks (installed there from .gpu/wheels, made by bench/gpu_check/prepare.sh).
PY=python3
[ -x .venv/bin/python ] && PY=.venv/bin/python
if ! $PY -c "import fastapi, uvicorn, pydantic_settings, multipart, pytest, pytest_timeout" 2>/dev/null; then
  if ! compgen -G ".gpu/wheels/*.whl" >/dev/null; then
    echo "$(basename "$0"): error: fastapi/uvicorn/pytest missing and no .gpu/wheels:" \
         "run bench/gpu_check/prepare.sh where PyPI is reachable, and carry .gpu" >&2
    exit 2
  fi
  [ -d .gpu/site ] || $PY -m pip install -q --no-index --no-deps -t .gpu/site .gpu/wheels/*.whl
  export PYTHONPATH="$PWD/.gpu/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
