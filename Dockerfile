# facesr serve: the upload web app on a CPU.
#   podman build -t facesr .            (or: docker build -t facesr .)
#   podman run --rm -p 8080:8080 facesr  then open http://127.0.0.1:8080/
FROM python:3.12-slim

# OpenCV (from mediapipe) needs libGL and GLib at import time; nothing else comes from apt (unpinned: the
# base image's Debian release fixes their versions, and security updates should come in).
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 \
    && rm -rf /var/lib/apt/lists/*

ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONUNBUFFERED=1 \
    FACESR_CACHE=/opt/facesr/cache

# CPU torch first, from PyTorch's CPU index, so pip never pulls the CUDA build.
# (pinned, through TORCH_SPEC)
ARG TORCH_SPEC=torch==2.13.0
# hadolint ignore=DL3013
RUN pip install --index-url https://download.pytorch.org/whl/cpu "${TORCH_SPEC}"

WORKDIR /src
COPY pyproject.toml README.md ./
COPY facesr ./facesr
COPY weights ./weights
# A non-editable install: the package, its page and the shipped weights (to <prefix>/share/facesr/weights).
RUN pip install . && rm -rf /src

# The BlazeFace detector models, fetched now and verified against their sha256 (facesr/weights.py):
# a container starts with no network access needed.
RUN facesr fetch-models && chmod -R a+rX /opt/facesr

RUN useradd --system --uid 10001 --home-dir /home/facesr --create-home facesr
USER 10001
WORKDIR /home/facesr

EXPOSE 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8080/api/health', timeout=4)"]
CMD ["facesr", "serve", "--host", "0.0.0.0"]
