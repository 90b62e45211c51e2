# YaPO Studio: the Gradio app on port 7860, with the demo world built into the image.
#   docker build -t yapo-studio .                                   # CPU torch (default)
#   docker build --build-arg TORCH_INDEX=https://download.pytorch.org/whl/cu126 -t yapo-studio:cuda .
#   docker run -p 7860:7860 -e HF_TOKEN=hf_... yapo-studio          # the token is read at run time only
#   docker run -p 127.0.0.1:7860:7860 -e YAPO_PUBLIC=0 yapo-studio  # for you alone: local paths, any hub model
FROM python:3.11-slim

ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX=https://download.pytorch.org/whl/cpu

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    HOME=/home/app \
    YAPO_CACHE_DIR=/home/app/.cache/yapo-studio \
    HF_HOME=/home/app/.cache/huggingface \
    YAPO_HOST=0.0.0.0 \
    YAPO_PORT=7860 \
    YAPO_PUBLIC=1

RUN useradd --create-home --uid 1000 app
WORKDIR /home/app/studio

COPY requirements.txt .
RUN pip install --index-url "${TORCH_INDEX}" "torch==${TORCH_VERSION}" \
    && pip install -r requirements.txt

COPY --chown=app:app . .
# the `yapo` command beside `python -m yapo_core` (its dependencies are installed above)
RUN pip install --no-deps . && rm -rf build ./*.egg-info
USER 1000
# The demo world, built once here (4 to 13 minutes on 2 quiet cores; deterministic from its seed) so
# that the app starts at once and works offline.
RUN python -m yapo_core demo build --size full

EXPOSE 7860
HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:7860/', timeout=4)"]
# As PID 1 the app ignores SIGTERM (no default handler); `docker stop` sends SIGINT, which Gradio
# answers by closing the server.
STOPSIGNAL SIGINT
CMD ["python", "app.py"]
