"""The one settings object of inkq, read from environment variables.

Every knob lives here with its default, its unit and why it exists; the README's
configuration table is generated from the same list (``inkq config``), so the two
cannot drift. Precedence: defaults, then the environment, then explicit
overrides (tests pass those).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Mapping

#: The repository (or installed tree) root: ``artifacts/`` lives beside the packages.
ROOT = Path(__file__).resolve().parent.parent

#: Redis used by ``inkq api`` and ``inkq worker`` when REDIS_URL is unset
#: (``inkq up`` instead starts an embedded Redis).
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


def _setting(env: str, default: Any, doc: str) -> Any:
    return field(default=default, metadata={"env": env, "doc": doc})


@dataclass(frozen=True)
class Settings:
    """All of inkq's configuration. Build it with :meth:`from_env`."""

    redis_url: str | None = _setting(
        "REDIS_URL", None,
        "Redis for the broker and the job store. Unset: `inkq up` starts an embedded "
        f"Redis; `inkq api`/`inkq worker` use {DEFAULT_REDIS_URL}.")
    data_dir: Path = _setting(
        "INKQ_DATA_DIR", Path(".inkq"),
        "Folder for the embedded Redis's data (AOF) and logs.")
    metrics_dir: Path = _setting(
        "INKQ_METRICS_DIR", Path(".inkq/metrics"),
        "Folder where every API and worker process on this host writes its Prometheus "
        "metrics (multiprocess mode); /metrics sums them. `inkq up` uses "
        "`INKQ_DATA_DIR/metrics`, emptied at start. `PROMETHEUS_MULTIPROC_DIR` wins if set.")
    model_path: Path = _setting(
        "INKQ_MODEL_PATH", ROOT / "artifacts" / "emnist_model.joblib",
        "The model artifact; its model card is the `.json` beside it.")
    result_ttl_s: int = _setting(
        "INKQ_RESULT_TTL_S", 86_400,
        "How long a job and its results are kept, counted from submission and "
        "renewed when the job finishes (`expires_at`).")
    max_images_per_job: int = _setting(
        "INKQ_MAX_IMAGES_PER_JOB", 10_000, "Images accepted in one job (413 above).")
    max_request_bytes: int = _setting(
        "INKQ_MAX_REQUEST_BYTES", 256 * 1024 * 1024, "Largest request body (413 above).")
    max_image_bytes: int = _setting(
        "INKQ_MAX_IMAGE_BYTES", 2 * 1024 * 1024,
        "Largest single image, decoded bytes (per-item `image_too_large`; 413 on /predict).")
    max_image_pixels: int = _setting(
        "INKQ_MAX_IMAGE_PIXELS", 4_000_000,
        "Largest image, width x height, checked from the header before decoding.")
    chunk_size: int = _setting(
        "INKQ_CHUNK_SIZE", 64,
        "Images per Celery task. Small enough that a worker soon turns to a waiting "
        "single prediction, large enough to batch the model.")
    visibility_timeout_s: int = _setting(
        "INKQ_VISIBILITY_TIMEOUT_S", 300,
        "Broker visibility timeout: a chunk whose worker died is redelivered after at "
        "most this long, so it must exceed the longest time a chunk may run.")
    predict_timeout_s: float = _setting(
        "INKQ_PREDICT_TIMEOUT_S", 10.0, "How long POST /predict waits for a worker (504 after).")
    redis_timeout_s: float = _setting(
        "INKQ_REDIS_TIMEOUT_S", 0.5,
        "Socket timeout of the API's Redis calls: a stalled Redis gives 503 within about this.")
    worker_concurrency: int = _setting(
        "INKQ_WORKER_CONCURRENCY", 0,
        "Worker processes per `inkq worker` (0: one per CPU core).")
    worker_max_memory_mb: int = _setting(
        "INKQ_WORKER_MAX_MEMORY_MB", 600,
        "A worker process is replaced after a task once its RSS exceeds this.")
    worker_max_tasks_per_child: int = _setting(
        "INKQ_WORKER_MAX_TASKS_PER_CHILD", 5_000,
        "A worker process is replaced after this many tasks.")
    heartbeat_s: float = _setting(
        "INKQ_HEARTBEAT_S", 2.0, "How often workers report themselves alive for /readyz.")
    api_processes: int = _setting(
        "INKQ_API_PROCESSES", 1, "Gunicorn worker processes of the API.")
    api_threads: int = _setting(
        "INKQ_API_THREADS", 16, "Threads per API process (requests waiting on workers hold one).")
    proxies: int = _setting(
        "INKQ_PROXIES", 0,
        "Reverse proxies in front of the API that set X-Forwarded-For, -Proto, -Host and -Prefix: "
        "the API believes that many of them (client addresses for rate limits, the scheme, host "
        "and path of links). 0: the headers are ignored, as any client could forge them.")
    client_timeout_s: float = _setting(
        "INKQ_CLIENT_TIMEOUT_S", 20.0,
        "The API drops a client that sends or reads nothing for this long in the middle of a "
        "request, so a stalled connection does not hold a thread.")
    require_api_key: bool = _setting(
        "INKQ_REQUIRE_API_KEY", False,
        "Require an API key (`Authorization: Bearer <key>`) on /v1 and /predict; "
        "manage keys with `inkq keys`.")
    rate_limit_per_min: int = _setting(
        "INKQ_RATE_LIMIT_PER_MIN", 6_000,
        "Requests per minute per API key (per client address without keys); 0 turns it off.")
    cors_origins: str = _setting(
        "INKQ_CORS_ORIGINS", "*",
        "Comma-separated origins (`https://app.example.com`) whose web pages may call the API "
        "from a browser; `*`: any (keys are bearer tokens, never cookies); `none`: no other site's.")
    webhook_allowed_hosts: str = _setting(
        "INKQ_WEBHOOK_ALLOWED_HOSTS", "",
        "Comma-separated hosts a job's `callback_url` may point at (`*.example.com` "
        "allowed); empty: no webhooks.")
    webhook_secret: str = _setting(
        "INKQ_WEBHOOK_SECRET", "",
        "Key of the webhooks' HMAC-SHA256 signature (`Inkq-Signature` header); required "
        "for webhooks.")
    webhook_max_attempts: int = _setting(
        "INKQ_WEBHOOK_MAX_ATTEMPTS", 8,
        "Delivery attempts per webhook, with exponential backoff (1 s, 2 s, 4 s, ... up to 5 min).")
    webhook_timeout_s: float = _setting(
        "INKQ_WEBHOOK_TIMEOUT_S", 5.0, "Timeout of one webhook delivery attempt.")
    log_level: str = _setting("INKQ_LOG_LEVEL", "INFO", "Log level.")
    log_format: str = _setting("INKQ_LOG_FORMAT", "text", "`text` or `json` (one JSON object per line).")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> "Settings":
        """Defaults, then ``environ`` (default ``os.environ``), then ``overrides``."""
        environ = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = environ.get(f.metadata["env"])
            if raw is not None and raw != "":
                values[f.name] = _parse(f, raw)
        values.update(overrides)
        return cls(**values)

    @property
    def broker_url(self) -> str:
        return self.redis_url or DEFAULT_REDIS_URL

    @property
    def webhook_hosts(self) -> list[str]:
        return [h.strip() for h in self.webhook_allowed_hosts.split(",") if h.strip()]

    @property
    def cors_origin_list(self) -> list[str]:
        origins = [o.strip().rstrip("/") for o in self.cors_origins.split(",") if o.strip()]
        return [] if [o.lower() for o in origins] == ["none"] else origins

    @property
    def card_path(self) -> Path:
        return self.model_path.with_suffix(".json")

    def replace(self, **changes: Any) -> "Settings":
        return dataclasses.replace(self, **changes)


def _parse(f: dataclasses.Field, raw: str) -> Any:
    kind = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    try:
        if kind.startswith("int"):
            return int(raw)
        if kind.startswith("float"):
            return float(raw)
        if kind.startswith("bool"):
            return raw.strip().lower() in ("1", "true", "yes", "on")
        if kind.startswith("Path"):
            return Path(raw)
    except ValueError as exc:
        raise ValueError(f"{f.metadata['env']}={raw!r}: {exc}") from None
    return raw


def table() -> list[tuple[str, str, str]]:
    """(variable, default, description) rows for the README's configuration table."""
    rows = []
    for f in fields(Settings):
        default = f.default
        if isinstance(default, Path) and default.is_absolute():
            try:
                default = default.relative_to(ROOT)
            except ValueError:
                pass
        rows.append((f.metadata["env"], "" if default is None else str(default), f.metadata["doc"]))
    return rows
