# kft on a CUDA GPU: a Hugging Face Docker Space (T4 or larger) or any host with the NVIDIA container toolkit.
# UNTESTED HERE: the machines this project is built on have no Docker engine, so this image has never been
# built by us; tests/test_ship.py checks what can be checked without building it (files, port, user, command).
#
#   docker build -t kft .
#   docker run --gpus all -p 7860:7860 -v kft-data:/data -e KFT_AUTH=me:long-password -e HF_TOKEN kft
FROM nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

ENV DEBIAN_FRONTEND=noninteractive PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1
# python3-dev and build-essential: Triton (Unsloth's kernels) compiles small launchers at run time.
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential git ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# A non-root user with uid 1000 (what Hugging Face Spaces run as); Ubuntu 24.04 images ship "ubuntu" with that uid.
RUN (userdel -r ubuntu 2>/dev/null || true) \
    && useradd -m -u 1000 user \
    && mkdir -p /data /opt/venv \
    && chown user:user /data /opt/venv
USER user
ENV HOME=/home/user \
    PATH=/opt/venv/bin:$PATH \
    KFT_HOST=0.0.0.0 \
    KFT_PORT=7860 \
    KFT_DATA_DIR=/data \
    HF_HOME=/data/.huggingface
WORKDIR /home/user/app

# The GPU set: requirements.txt (torch, transformers, PEFT, TRL, bitsandbytes, gradio) plus Unsloth.
RUN python3 -m venv /opt/venv
COPY --chown=user requirements.txt requirements-gpu.txt ./
RUN pip install --upgrade pip && pip install -r requirements-gpu.txt

COPY --chown=user app.py pyproject.toml README.md ./
COPY --chown=user kft ./kft


# Runs, adapters, checkpoints, uploads and the Hugging Face cache live here: mount a volume to keep them.
VOLUME /data
EXPOSE 7860
CMD ["python", "app.py"]
