#
# GPU training on a CUDA PyTorch base (torch comes with the base image):
#   docker build -f deploy/train.Dockerfile -t jem-train .
#   docker run --gpus all -v jem-models:/app/model_store/models jem-train \
#     torchrun --standalone --nproc_per_node 4 -m training train --preset NAME
# A file of its own so that building the CPU serving image (./Dockerfile) never touches this
# multi-GB base, whichever builder runs. Build context: the repository root.

ARG CUDA_IMAGE=pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime

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
