# syntax=docker/dockerfile:1
#
# One image for the inkq API and its workers (same code and model, another
# command), and a `flower` variant with Celery's monitoring UI added.
#
#   docker build -t inkq .                        # the app image (last stage)
#   docker run --rm -p 8000:8000 -e REDIS_URL=redis://host:6379/0 inkq
#   docker run --rm -e REDIS_URL=redis://host:6379/0 inkq inkq worker
#
# docker-compose.yml builds `app` for the api and worker services and `flower`
# for the optional monitoring profile.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm

# --- build: the inkq package as a wheel (no source tree in the final image) ---
# A C compiler here only: it builds worker._fastpng, worker._features and worker._euler
# into the wheel.
FROM ${PYTHON_IMAGE} AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml setup.py README.md ./
COPY inkq ./inkq
COPY api ./api
COPY worker ./worker
RUN pip wheel --no-deps --wheel-dir /wheels .

# --- base: pinned runtime dependencies, inkq, the model, a non-root user ---
FROM ${PYTHON_IMAGE} AS base
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1
RUN groupadd --system --gid 10001 inkq \
 && useradd --system --uid 10001 --gid inkq --home-dir /app --no-create-home \
            --shell /usr/sbin/nologin inkq
WORKDIR /app
# Exact versions of every runtime dependency (binary wheels: no compiler needed).
COPY requirements.lock ./
RUN pip install --only-binary=:all: -r requirements.lock
# The project itself, without letting pip resolve anything beyond the lock.
COPY --from=build /wheels /tmp/wheels
RUN pip install --no-deps /tmp/wheels/*.whl && rm -rf /tmp/wheels
# The model artifact and its model card (the worker verifies the artifact's
# sha256 against the card before unpickling). Owned by root: read-only to the app.
COPY artifacts/emnist_model.joblib artifacts/emnist_model.json ./artifacts/
ENV INKQ_MODEL_PATH=/app/artifacts/emnist_model.joblib \
    INKQ_DATA_DIR=/app/.inkq
# The app user may write only its working folder (`inkq up`'s data folder).
RUN chown inkq:inkq /app

# --- flower: the app image plus Celery's monitoring UI (pinned, same Celery) ---
FROM base AS flower
RUN pip install --only-binary=:all: -c requirements.lock \
        flower==2.2.0 tornado==6.6.1 humanize==4.17.0 prometheus_client==0.26.0 pytz==2026.6
USER inkq
EXPOSE 5555
CMD ["celery", "flower"]

# --- app: the API by default; `inkq worker` for workers ---
FROM base AS app
USER inkq
EXPOSE 8000
# Exec form: inkq is PID 1's direct child under `init: true` (or PID 1 itself),
# and receives SIGTERM for a graceful shutdown. No start script, no shell.
CMD ["inkq", "api", "--host", "0.0.0.0", "--port", "8000"]
