# syntax=docker/dockerfile:1
# Two images from one file:  docker build --target trainer .   /   docker build --target service .
# Layers run from rarely to often changed: OS, torch (GBs), other dependencies, then the code, so
# editing the code rebuilds only the last, small layers.

ARG PYTHON_VERSION=3.11
FROM python:${PYTHON_VERSION}-slim-bookworm AS base
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONPATH=/app MODEL_DIR=/models
RUN useradd --create-home --uid 1000 latentlab \
    && mkdir /models && chown latentlab:latentlab /models   # a new named volume takes this owner
WORKDIR /app
# PyPI's Linux torch wheels carry CUDA: the same image runs on a GPU or the CPU
ARG TORCH_VERSION=2.14.1
RUN pip install "torch==${TORCH_VERSION}" \
    && echo "torch==${TORCH_VERSION}" > /etc/pip-constraints.txt
ENV PIP_CONSTRAINT=/etc/pip-constraints.txt
# a copy of the project's metadata with empty packages: installs the dependencies, not the code
COPY pyproject.toml README.md /tmp/meta/
RUN mkdir -p /tmp/meta/shared /tmp/meta/trainer /tmp/meta/service \
    && touch /tmp/meta/shared/__init__.py /tmp/meta/trainer/__init__.py /tmp/meta/service/__init__.py


FROM base AS trainer
# FashionMNIST from Debian: training needs no download
RUN apt-get update && apt-get install -y --no-install-recommends dataset-fashion-mnist \
    && rm -rf /var/lib/apt/lists/*
ARG TORCHVISION_VERSION=0.29.1
RUN echo "torchvision==${TORCHVISION_VERSION}" >> /etc/pip-constraints.txt \
    && pip install "/tmp/meta[train]" && pip uninstall -y latentlab && rm -rf /tmp/meta
COPY shared shared
COPY trainer trainer
USER latentlab
ENTRYPOINT ["python", "-m", "trainer"]
CMD ["--help"]


# ONNX Runtime Web, which the explorer draws with in the page: from npm, at the version its lock file pins
FROM node:22-bookworm-slim AS explorer-runtime
WORKDIR /runtime
COPY service/api/static/runtime/package.json service/api/static/runtime/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund


FROM base AS service
# ONNX Runtime beside torch: RUNTIME=auto measures both and serves each batch size with the faster
RUN pip install "/tmp/meta[serve,onnx]" && pip uninstall -y latentlab && rm -rf /tmp/meta
COPY shared shared
COPY service service
# the three files the explorer loads, and the version they belong to (service/api/pages.py)
COPY --from=explorer-runtime /runtime/node_modules/onnxruntime-web/package.json \
     service/api/static/runtime/node_modules/onnxruntime-web/
COPY --from=explorer-runtime /runtime/node_modules/onnxruntime-web/dist/ort.wasm.min.mjs \
     /runtime/node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.mjs \
     /runtime/node_modules/onnxruntime-web/dist/ort-wasm-simd-threaded.wasm \
     service/api/static/runtime/node_modules/onnxruntime-web/dist/
USER latentlab
ENV HOST=0.0.0.0 PORT=8000
EXPOSE 8000
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
    CMD python -c "import os, urllib.request; urllib.request.urlopen(f'http://127.0.0.1:{os.environ[\"PORT\"]}/readyz', timeout=4)"
# SIGTERM drains (DRAIN_TIMEOUT_S, 30 s by default): give `docker stop` longer than that, e.g. docker stop -t 40
STOPSIGNAL SIGTERM
ENTRYPOINT ["python", "-m", "service"]
