#
# The CPU serving image:   docker build -t jem-serve .
#   (gRPC included, served when JEM_GRPC_PORT is set; REST only: --build-arg SERVE_EXTRAS=)
# GPU training has its own file, deploy/train.Dockerfile: with the classic builder (Debian's
# docker.io, docker-compose 1.29) every stage before the target is built, so a CUDA stage in
# this file would be built, or pulled, on the way to the serving image.
#
# No `# syntax=` line: BuildKit would fetch that front-end image from a registry first, and
# nothing here needs more than its built-in front end. tests/docker builds it with the classic
# builder (Debian's docker.io 20.10, no buildx).
#
# Build arguments (defaults are the public sources; docs/deployment.md shows offline builds):
#   PYTHON_IMAGE      base image with Python 3.11 (deploy/docker/debian-base.sh makes one
#                     from Debian packages where no registry is reachable)
#   TORCH_VERSION     the CPU wheel's exact version, local label included ("+cpu"), so that
#                     no index can substitute a CUDA build
#   TORCH_INDEX_URL   the index torch and its own dependencies come from
#   TORCH_FIND_LINKS  also look for the wheel here (pip --find-links: a directory inside the
#                     build, or a page such as http://127.0.0.1:8765/ with
#                     `docker build --network host`); TORCH_INDEX_URL then only needs to
#                     hold torch's dependencies (a PyPI mirror, or https://pypi.org/simple)
#   SERVE_EXTRAS      pyproject.toml extras installed beside the service's dependencies,
#                     comma-separated; default "grpc" (grpcio, protobuf: ~21 MB) for the Open
#                     Inference Protocol's gRPC on JEM_GRPC_PORT; empty for a REST-only image
#   SHIP_MODELS       the model versions the image holds, space-separated refs ("name" is its
#                     latest final version, "name:3" one version): copied from the repository's
#                     store by `python -m model_store export`, numbers and bytes unchanged and
#                     verified. Default: the latest of the four shipped models (13 MB; the
#                     repository's store keeps every version reports cite, 82 MB)
#
# Layers go from least to most often changed: the torch wheel, the service's dependencies
# (read from pyproject.toml alone), then the code and the shipped models.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# ---------------------------------------------------------------------------------------------
# deps: a virtual environment with CPU-only torch and the service's runtime dependencies.
FROM ${PYTHON_IMAGE} AS deps
ARG TORCH_VERSION=2.13.0+cpu
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
ARG TORCH_FIND_LINKS=
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python3 -m venv /opt/venv
# The CPU index first and alone: from PyPI, torch resolves to the multi-GB CUDA build. A layer
# of its own so that editing pyproject.toml does not download torch again. Then out go what
# only building or testing torch needs (~200 MB): C++ headers, CMake files, C++ test binaries,
# protoc; torch_shm_manager stays (tensor sharing between processes).
# DL3013: hadolint reads the optional --find-links expansion as an unpinned package.
# SC2086: that expansion is unquoted on purpose, to give pip two words or none.
# hadolint ignore=DL3013,DL3059,SC2086
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url "${TORCH_INDEX_URL}" \
        ${TORCH_FIND_LINKS:+--find-links "${TORCH_FIND_LINKS}"} \
    && rm -rf /opt/venv/lib/python3*/site-packages/torch/include \
        /opt/venv/lib/python3*/site-packages/torch/share \
        /opt/venv/lib/python3*/site-packages/torch/test \
    && find /opt/venv/lib/python3*/site-packages/torch/bin -mindepth 1 \
        ! -name torch_shm_manager -delete
WORKDIR /src
COPY pyproject.toml ./
# [project].dependencies and SERVE_EXTRAS: the serving image needs no training, vision or dev
# extras. gRPC for the Open Inference Protocol (JEM_GRPC_PORT) by default, as Triton's and
# KServe's clients expect; --build-arg SERVE_EXTRAS= leaves it out.
ARG SERVE_EXTRAS=grpc
RUN python -c "import os, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; extras = [r for e in os.environ.get('SERVE_EXTRAS', '').split(',') if e for r in p['optional-dependencies'][e]]; print('\n'.join(p['dependencies'] + extras))" > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt

# ---------------------------------------------------------------------------------------------
# build: the three packages the service imports, whole (code and package data), compiled to
# bytecode once here because the serving container's root filesystem is read-only.
# No training/, tests/ or bench/: they never reach the image.
FROM deps AS build
WORKDIR /app
COPY jem ./jem
COPY model_store ./model_store
COPY service ./service
ARG SHIP_MODELS="digits-jem digits-baseline emoji-jem emoji-baseline"
# SC2086: SHIP_MODELS is unquoted on purpose, one argument per ref.
# hadolint ignore=SC2086
RUN python -m model_store --store model_store/models export /shipped ${SHIP_MODELS} \
    && rm -rf model_store/models /shipped/.staging \
    && find /shipped -name .lock -delete \
    && python -m compileall -q --invalidation-mode unchecked-hash jem model_store service \
    && python -c "import service.app"

# ---------------------------------------------------------------------------------------------
# serve: the slim runtime image. No compiler, no pip cache, no build tree, a non-root user.
FROM ${PYTHON_IMAGE} AS serve
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    JEM_MODEL_STORE=/app/model_store/models \
    JEM_HOST=0.0.0.0 \
    JEM_PORT=8000 \
    JEM_WORKERS=1 \
    JEM_TORCH_THREADS=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/jem-metrics
RUN groupadd --gid 10001 jem \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /app --shell /usr/sbin/nologin jem \
    && mkdir -p /tmp/jem-metrics \
    && chown jem:jem /tmp/jem-metrics
COPY --from=deps /opt/venv /opt/venv
COPY --from=build /app /app
# The shipped models (SHIP_MODELS). Mount a volume on JEM_MODEL_STORE (or point it elsewhere) to
# serve your own; an empty named volume is seeded with these files on first use.
COPY --from=build --chown=10001:10001 /shipped /app/model_store/models
WORKDIR /app
USER 10001:10001
EXPOSE 8000
# The one health check of the image (compose uses it as is): ready = models loaded and warm.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('JEM_PORT', '8000') + '/readyz', timeout=4)"]
CMD ["python", "-m", "service"]
