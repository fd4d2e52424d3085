# prognos: the API, the stream ingester, the flows and the MLflow server of compose.yaml all run
# this image. CPU-only PyTorch (no CUDA libraries: about 2 GB less). Not built here (no Docker
# engine on the development machine): see README, "Deployment and observability".

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# Torch first, from the CPU index, at the version pyproject.toml pins: the install of prognos
# below then finds it satisfied and pulls no CUDA build.
RUN pip install --index-url https://download.pytorch.org/whl/cpu torch==2.13.0
COPY pyproject.toml README.md /src/
COPY src /src/src
RUN pip install /src

FROM python:3.11-slim
# libgomp: XGBoost's and torch's OpenMP runtime.
RUN apt-get update \
    && apt-get install -y --no-install-recommends libgomp1 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin prognos \
    && mkdir /data && chown prognos:prognos /data
COPY --from=build /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PROGNOS_HOME=/data \
    OMP_WAIT_POLICY=PASSIVE
# Everything prognos writes (spool, reports, local caches) lives under the home.
VOLUME ["/data"]
USER prognos
WORKDIR /home/prognos
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=4)"]
CMD ["prognos", "serve", "--host", "0.0.0.0", "--port", "8000"]
