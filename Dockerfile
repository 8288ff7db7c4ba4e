# syntax=docker/dockerfile:1
#
# Two images from one file:
#   docker build -t jem-serve .                  CPU serving image (the default, last stage)
#   docker build --build-arg SERVE_EXTRAS=grpc -t jem-serve .   ... with gRPC (JEM_GRPC_PORT)
#   docker build --target train -t jem-train .   GPU training image on a CUDA PyTorch base
#
# Layers go from least to most often changed: the CPU torch wheel, the service's dependencies
# (read from pyproject.toml alone), then the code, then the shipped model.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime
ARG TORCH_VERSION=2.13.0

# ---------------------------------------------------------------------------------------------
# deps: a virtual environment with CPU-only torch and the service's runtime dependencies.
FROM ${PYTHON_IMAGE} AS deps
ARG TORCH_VERSION
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH
RUN python -m venv /opt/venv
# The CPU index first and alone: from PyPI, torch resolves to the multi-GB CUDA build. A layer
# of its own so that editing pyproject.toml does not download torch again.
# hadolint ignore=DL3059
RUN pip install --no-cache-dir "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu
WORKDIR /src
COPY pyproject.toml ./
# Only [project].dependencies: the serving image needs no training, vision or dev extras.
# --build-arg SERVE_EXTRAS=grpc adds gRPC for the Open Inference Protocol (JEM_GRPC_PORT).
ARG SERVE_EXTRAS=""
RUN python -c "import os, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; extras = [r for e in os.environ.get('SERVE_EXTRAS', '').split(',') if e for r in p['optional-dependencies'][e]]; print('\n'.join(p['dependencies'] + extras))" > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt

# ---------------------------------------------------------------------------------------------
# build: the project itself, installed without touching the dependency layer.
FROM deps AS build
COPY README.md ./
COPY jem ./jem
COPY model_store ./model_store
COPY service ./service
COPY training ./training
RUN pip install --no-cache-dir --no-deps . \
    && python -c "import jem, model_store, service"

# ---------------------------------------------------------------------------------------------
# train: GPU training on the CUDA PyTorch base (torch comes with the base image).
#   docker run --gpus all -v jem-models:/app/model_store/models jem-train \
#     torchrun --standalone --nproc_per_node 4 -m training train --preset NAME
FROM ${CUDA_IMAGE} AS train
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    JEM_MODEL_STORE=/app/model_store/models
WORKDIR /app
COPY pyproject.toml ./
# Dependencies with the train and vision extras first; torch is already in the base image and
# pip keeps it, as it satisfies "torch>=2.3".
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; print('\n'.join(p['dependencies'] + p['optional-dependencies']['train'] + p['optional-dependencies']['vision']))" > requirements.txt \
    && pip install --no-cache-dir -r requirements.txt
COPY README.md ./
COPY jem ./jem
COPY model_store ./model_store
COPY service ./service
COPY training ./training
RUN pip install --no-cache-dir --no-deps . \
    && groupadd --gid 10001 jem \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin jem \
    && mkdir -p /app/model_store/models /app/runs /app/data \
    && chown -R jem:jem /app/model_store/models /app/runs /app/data
USER 10001:10001
CMD ["python", "-m", "training", "--help"]

# ---------------------------------------------------------------------------------------------
# serve: the slim runtime image. No compiler, no pip cache, no source tree, a non-root user.
FROM ${PYTHON_IMAGE} AS serve
ENV VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    JEM_MODEL_STORE=/app/model_store/models \
    JEM_HOST=0.0.0.0 \
    JEM_PORT=8000 \
    JEM_WORKERS=1 \
    JEM_TORCH_THREADS=1 \
    PROMETHEUS_MULTIPROC_DIR=/tmp/jem-metrics
RUN groupadd --gid 10001 jem \
    && useradd --uid 10001 --gid 10001 --create-home --shell /usr/sbin/nologin jem \
    && mkdir -p /app/model_store/models /tmp/jem-metrics \
    && chown -R jem:jem /app /tmp/jem-metrics
COPY --from=build /opt/venv /opt/venv
# The shipped default model. Mount a volume on JEM_MODEL_STORE (or point it elsewhere) to serve
# your own; an empty named volume is seeded with these files on first use.
COPY --chown=jem:jem model_store/models /app/model_store/models
WORKDIR /app
USER 10001:10001
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:' + os.environ.get('JEM_PORT', '8000') + '/readyz', timeout=4)"]
CMD ["python", "-m", "service"]
