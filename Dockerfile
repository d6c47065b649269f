# One image for every Sharpen service (dashboard, worker, trainer, scheduler, migrate).
# GPU workers: run with the NVIDIA container runtime (docker-compose.yml reserves a GPU for `worker`).
FROM python:3.11-slim
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 STORAGE_ROOT=/data
RUN apt-get update && apt-get install -y --no-install-recommends libglib2.0-0 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY pyproject.toml README.md ./
COPY shared shared
COPY trainer trainer
COPY worker worker
COPY scheduler scheduler
COPY dashboard dashboard
COPY migrations migrations
COPY models models
RUN pip install -e '.[server]'
VOLUME /data
EXPOSE 8000
CMD ["sharpen", "--help"]
