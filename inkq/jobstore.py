"""The Redis job store: jobs, their images, their results and their progress.

Job state lives here, never in Celery's result backend: an unknown id is a 404,
not "pending" forever. Everything a worker writes goes through one Lua script
per step, so each step is atomic and idempotent: a redelivered chunk (a worker
killed after writing, before acknowledging) adds nothing the second time, and
progress counts stay exact.

Results are stored compactly, one hash field per item: ``[[label, prob], ...]``
(top 5, best first) for a classified image, ``{"code", "message"}`` for an
item error. :func:`decode_item` turns either into the API's item form.
"""

from __future__ import annotations

import base64
import hashlib
import logging
import os
import secrets
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Iterable, Sequence

import orjson
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from . import keys
from .errors import StoreUnavailable

QUEUED, RUNNING = "queued", "running"
SUCCEEDED, PARTIALLY_SUCCEEDED, FAILED, CANCELLED = (
    "succeeded", "partially_succeeded", "failed", "cancelled")
FINISHED = (SUCCEEDED, PARTIALLY_SUCCEEDED, FAILED, CANCELLED)

#: Images per RPUSH when storing a job (bounds each command's size).
STORE_BATCH = 256

# Claim a chunk: flip the job to running on first touch and return its status
# with the chunk's images, so a cancelled or expired job costs one round trip.
_CLAIM_CHUNK = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return {'missing', {}} end
if status == 'queued' then
  redis.call('HSET', KEYS[1], 'status', 'running', 'started_at', ARGV[1], 'model_version', ARGV[2])
  status = 'running'
end
if status ~= 'running' then return {status, {}} end
return {status, redis.call('LRANGE', KEYS[2], ARGV[3], ARGV[4])}
"""

# Record a chunk's results: HSETNX per item makes a second delivery a no-op,
# counters move only for new items, and the last item finishes the job.
_RECORD_RESULTS = """
local job, res, imgs = KEYS[1], KEYS[2], KEYS[3]
if redis.call('EXISTS', job) == 0 then return {0, 'missing', 0, 0} end
local now, ttl = ARGV[1], tonumber(ARGV[2])
local added, failed = 0, 0
for i = 3, #ARGV, 3 do
  if redis.call('HSETNX', res, ARGV[i], ARGV[i + 1]) == 1 then
    added = added + 1
    if ARGV[i + 2] == '1' then failed = failed + 1 end
  end
end
if added == 0 then return {0, redis.call('HGET', job, 'status'), 0, 0} end
redis.call('PEXPIRE', res, redis.call('PTTL', job))
local done = redis.call('HINCRBY', job, 'done', added)
local nfailed = redis.call('HINCRBY', job, 'failed', failed)
local status = redis.call('HGET', job, 'status')
local total = tonumber(redis.call('HGET', job, 'total'))
if done >= total and (status == 'queued' or status == 'running') then
  local final = 'partially_succeeded'
  if nfailed == 0 then final = 'succeeded' elseif nfailed >= total then final = 'failed' end
  redis.call('HSET', job, 'status', final, 'finished_at', now, 'expires_at', now + ttl)
  redis.call('EXPIRE', job, ttl)
  redis.call('EXPIRE', res, ttl)
  redis.call('DEL', imgs)
  return {added, final, failed, 1}
end
return {added, status, failed, 0}
"""

# Cancel: only an active job changes; its images are dropped at once.
_CANCEL = """
local status = redis.call('HGET', KEYS[1], 'status')
if not status then return nil end
if status == 'queued' or status == 'running' then
  local ttl = tonumber(ARGV[2])
  redis.call('HSET', KEYS[1], 'status', 'cancelled', 'finished_at', ARGV[1], 'expires_at', ARGV[1] + ttl)
  redis.call('EXPIRE', KEYS[1], ttl)
  if redis.call('EXISTS', KEYS[3]) == 1 then redis.call('EXPIRE', KEYS[3], ttl) end
  redis.call('DEL', KEYS[2])
  return 'cancelled'
end
return status
"""


def connect(url: str, *, timeout_s: float | None = None, **kwargs: Any) -> redis.Redis:
    """A Redis client whose calls fail fast (``timeout_s``) instead of hanging.

    A dropped connection (Redis restarted) is retried once at once on a fresh
    one; a timeout is not retried, so a stalled Redis costs one ``timeout_s``.
    """
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout_s,
        socket_connect_timeout=timeout_s,
        health_check_interval=30,
        retry=Retry(NoBackoff(), 1, supported_errors=(redis.ConnectionError,)),
        **kwargs,
    )


def check_redis_config(client: redis.Redis, log: logging.Logger) -> list[str]:
    """Warn loudly about Redis settings that lose work; returns the warnings.

    ``maxmemory-policy`` other than ``noeviction`` lets Redis silently evict
    queued images, results or the queue itself under memory pressure.
    """
    warnings = []
    try:
        policy = client.config_get("maxmemory-policy").get("maxmemory-policy", "")
        aof = client.config_get("appendonly").get("appendonly", "")
    except redis.ResponseError:  # CONFIG disabled (managed Redis): nothing to check
        return warnings
    except redis.RedisError as exc:
        log.warning("could not check the Redis configuration: %s", exc)
        return warnings
    if policy != "noeviction":
        warnings.append(f"Redis maxmemory-policy is {policy!r}, not 'noeviction': under memory "
                        "pressure Redis will silently DROP queued jobs and results. "
                        "Run Redis with --maxmemory-policy noeviction.")
    if aof != "yes":
        warnings.append("Redis runs without the append-only file: a restart loses every queued "
                        "job. Run Redis with --appendonly yes.")
    for w in warnings:
        log.warning("!" * 8 + " " + w)
    return warnings


def new_job_id() -> str:
    """128 random bits (unguessable) as 26 characters of lowercase base32.

    Not base64url: an id starting with ``-`` (one in 64 of them) is read as an
    option by command lines (``inkq status -fX...``), and ``_``/``-`` are easy
    to lose when an id is double-clicked or copied from a terminal."""
    return base64.b32encode(secrets.token_bytes(16)).decode("ascii").rstrip("=").lower()


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def encode_item(item: dict[str, Any]) -> bytes:
    """Compact stored form of one result item (see the module docstring)."""
    if "error" in item:
        return orjson.dumps(item["error"])
    return orjson.dumps([[c["label"], c["prob"]] for c in item["top5"]])


def decode_item(index: int, raw: bytes | str) -> dict[str, Any]:
    """The API's item form of a stored result."""
    value = orjson.loads(raw)
    if isinstance(value, dict):
        return {"index": index, "error": value}
    top5 = [{"label": label, "prob": prob} for label, prob in value]
    return {"index": index, "prediction": top5[0]["label"], "confidence": top5[0]["prob"], "top5": top5}


@dataclass(frozen=True)
class Recorded:
    """What recording a chunk did: items newly stored (``failed`` of them errors), the
    job's status after it, and whether this very write finished the job."""

    added: int
    status: str
    failed: int = 0
    finished_job: bool = False


@dataclass(frozen=True)
class Claim:
    """What a worker gets when it claims a chunk: the job's status and the images."""

    status: str
    images: list[bytes]


class JobStore:
    """Jobs in Redis. Every method maps Redis failures to :class:`StoreUnavailable`."""

    def __init__(self, client: redis.Redis, *, ttl_s: int):
        self.redis = client
        self.ttl_s = ttl_s
        self._claim = client.register_script(_CLAIM_CHUNK)
        self._record = client.register_script(_RECORD_RESULTS)
        self._cancel = client.register_script(_CANCEL)

    # -- submitting ---------------------------------------------------------

    new_id = staticmethod(new_job_id)

    def model_version(self) -> str:
        """The model version workers last announced ("" before any worker started)."""
        with self.guard():
            value = self.redis.get(keys.model_version())
        return value.decode() if value else ""

    def create(
        self,
        images: Sequence[bytes | str],
        *,
        owner: str = "",
        rejected: dict[int, dict[str, str]] | None = None,
        model_version: str = "",
        job_id: str | None = None,
        callback_url: str | None = None,
    ) -> dict[str, Any]:
        """Store a job's images and record it as queued; returns the job document.

        ``rejected`` maps indexes refused up front (too large, not text) to their
        item error; they are stored as empty placeholders and count as done.
        """
        job_id = job_id or new_job_id()
        rejected = rejected or {}
        now = time.time()
        total = len(images)
        with self.guard():
            pipe = self.redis.pipeline(transaction=False)
            for start in range(0, total, STORE_BATCH):
                pipe.rpush(keys.images(job_id), *images[start:start + STORE_BATCH])
            pipe.expire(keys.images(job_id), self.ttl_s)
            if rejected:
                pipe.hset(keys.results(job_id), mapping={
                    str(i): encode_item({"error": err}) for i, err in rejected.items()})
                pipe.expire(keys.results(job_id), self.ttl_s)
            done = len(rejected)
            fields: dict[str, Any] = {
                "status": QUEUED, "total": total, "done": done, "failed": done,
                "created_at": now, "expires_at": now + self.ttl_s,
                "owner": owner, "model_version": model_version,
            }
            if callback_url:
                fields["callback_url"] = callback_url
            if done == total:  # nothing left for a worker: finished already
                fields.update(status=FAILED, finished_at=now)
                pipe.delete(keys.images(job_id))
            pipe.hset(keys.job(job_id), mapping=fields)
            pipe.expire(keys.job(job_id), self.ttl_s)
            if done < total:
                pipe.zadd(keys.active(), {job_id: now})
            pipe.execute()
        return self.document(job_id, {k: str(v) for k, v in fields.items()})

    def remember_idempotency(self, owner: str, key: str, job_id: str) -> str | None:
        """Bind ``key`` to ``job_id``; returns the job id it was already bound to, if any."""
        name = keys.idempotency(owner, digest(key))
        with self.guard():
            if self.redis.set(name, job_id, nx=True, ex=self.ttl_s):
                return None
            existing = self.redis.get(name)
        return existing.decode() if existing else None

    def forget_idempotency(self, owner: str, key: str) -> None:
        with self.guard():
            self.redis.delete(keys.idempotency(owner, digest(key)))

    def delete(self, job_id: str) -> None:
        with self.guard():
            self.redis.delete(keys.job(job_id), keys.images(job_id), keys.results(job_id))

    # -- reading ------------------------------------------------------------

    def get(self, job_id: str, *, owner: str | None = None) -> dict[str, Any] | None:
        """The job document, or None if unknown, expired or (``owner`` given) not theirs."""
        with self.guard():
            raw = self.redis.hgetall(keys.job(job_id))
        if not raw:
            return None
        fields = {k.decode(): v.decode() for k, v in raw.items()}
        if owner is not None and fields.get("owner", "") != owner:
            return None
        return self.document(job_id, fields)

    def results(self, job_id: str, offset: int, limit: int, total: int) -> list[dict[str, Any]]:
        """Finished items with index in ``[offset, offset + limit)``, in input order."""
        stop = min(offset + limit, total)
        if stop <= offset:
            return []
        indexes = range(offset, stop)
        with self.guard():
            raws = self.redis.hmget(keys.results(job_id), [str(i) for i in indexes])
        return [decode_item(i, raw) for i, raw in zip(indexes, raws) if raw is not None]

    @staticmethod
    def document(job_id: str, fields: dict[str, str]) -> dict[str, Any]:
        """The public job document from the stored hash fields."""
        total, done, failed = (int(fields.get(k, 0)) for k in ("total", "done", "failed"))
        return {
            "id": job_id,
            "status": fields.get("status", QUEUED),
            "total": total,
            "done": done,
            "failed": failed,
            "succeeded": done - failed,
            "created_at": _float(fields.get("created_at")),
            "started_at": _float(fields.get("started_at")),
            "finished_at": _float(fields.get("finished_at")),
            "expires_at": _float(fields.get("expires_at")),
            "model_version": fields.get("model_version") or None,
            "callback_url": fields.get("callback_url") or None,
        }

    def callback(self, job_id: str) -> tuple[str | None, bool]:
        """The job's callback URL and whether its webhook was already delivered."""
        with self.guard():
            url, delivered = self.redis.hmget(keys.job(job_id), ["callback_url", "webhook_delivered_at"])
        return (url.decode() if url else None), delivered is not None

    def lock_webhook(self, job_id: str, ttl_s: float) -> bool:
        """Take the job's webhook lock (one delivery in flight at a time); False if held."""
        with self.guard():
            return bool(self.redis.set(keys.webhook_lock(job_id), 1, nx=True, px=int(ttl_s * 1000)))

    def unlock_webhook(self, job_id: str) -> None:
        with self.guard():
            self.redis.delete(keys.webhook_lock(job_id))

    def mark_delivered(self, job_id: str) -> bool:
        """Record the webhook as delivered; False if it already was (another delivery won)."""
        with self.guard():
            return bool(self.redis.hsetnx(keys.job(job_id), "webhook_delivered_at", time.time()))

    # -- cancelling ---------------------------------------------------------

    def cancel(self, job_id: str) -> str | None:
        """Cancel an active job; returns its status after the call (None if unknown)."""
        with self.guard():
            status = self._cancel(
                keys=[keys.job(job_id), keys.images(job_id), keys.results(job_id)],
                args=[time.time(), self.ttl_s])
            self.redis.zrem(keys.active(), job_id)
        return status.decode() if isinstance(status, bytes) else status

    # -- working ------------------------------------------------------------

    def claim(self, job_id: str, start: int, stop: int, *, model_version: str) -> Claim:
        """Mark the job running and fetch images ``[start, stop)`` unless it is no longer active."""
        with self.guard():
            status, images = self._claim(
                keys=[keys.job(job_id), keys.images(job_id)],
                args=[time.time(), model_version, start, stop - 1])
        return Claim(status.decode(), list(images))

    def record(self, job_id: str, start: int, items: Iterable[dict[str, Any] | None]) -> Recorded:
        """Store a chunk's results (None entries are skipped)."""
        args: list[Any] = [time.time(), self.ttl_s]
        for offset, item in enumerate(items):
            if item is not None:
                args += [start + offset, encode_item(item), "1" if "error" in item else "0"]
        with self.guard():
            if len(args) == 2:
                status = self.redis.hget(keys.job(job_id), "status") or b"missing"
                return Recorded(0, status.decode())
            added, status, failed, finished = self._record(
                keys=[keys.job(job_id), keys.results(job_id), keys.images(job_id)], args=args)
            # Progress, for the search for lost chunks (outside the script: the
            # index is not one job's key, and a Redis Cluster keeps those apart).
            if finished or status in (b"missing", b"cancelled"):
                self.redis.zrem(keys.active(), job_id)
            elif int(added):
                self.redis.zadd(keys.active(), {job_id: args[0]}, xx=True)
        return Recorded(int(added), status.decode(), int(failed), bool(finished))

    # -- lost chunks ----------------------------------------------------------

    def stalled(self, older_than_s: float) -> list[str]:
        """Unfinished jobs that made no progress for ``older_than_s`` seconds."""
        with self.guard():
            ids = self.redis.zrangebyscore(keys.active(), "-inf", time.time() - older_than_s)
        return [i.decode() for i in ids]

    def lock_requeue(self, ttl_s: float) -> bool:
        """Take the lock of the search for lost chunks (one worker looks at a
        time) for ``ttl_s`` seconds; False if another worker holds it."""
        with self.guard():
            return bool(self.redis.set(keys.requeue_lock(), os.getpid(), nx=True, px=int(ttl_s * 1000)))

    def missing(self, job_id: str, chunk_size: int) -> list[tuple[int, int]]:
        """``[start, stop)`` ranges, at most ``chunk_size`` long, of the items of a
        job that have no result yet; ``[]`` (and the job leaves the index) when
        the job is no longer active. Touches the job's progress time."""
        with self.guard():
            status, total = self.redis.hmget(keys.job(job_id), ["status", "total"])
            if status not in (b"queued", b"running"):
                self.redis.zrem(keys.active(), job_id)
                return []
            done = {int(k) for k in self.redis.hkeys(keys.results(job_id))}
            self.redis.zadd(keys.active(), {job_id: time.time()}, xx=True)
        ranges: list[tuple[int, int]] = []
        for i in range(int(total)):
            if i in done:
                continue
            if ranges and ranges[-1][1] == i and i - ranges[-1][0] < chunk_size:
                ranges[-1] = (ranges[-1][0], i + 1)
            else:
                ranges.append((i, i + 1))
        return ranges

    def guard(self) -> "_Guard":
        return _Guard()


class _Guard:
    """Turns redis-py's connection and timeout errors into StoreUnavailable."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None and issubclass(
                exc_type, (redis.ConnectionError, redis.TimeoutError, redis.BusyLoadingError)):
            raise StoreUnavailable(f"Redis is unavailable: {exc}") from exc
        return False


def iso(ts: float | None) -> str | None:
    """Epoch seconds as ISO 8601 UTC with milliseconds (``2026-11-27T11:07:32.123Z``)."""
    if ts is None:
        return None
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def public(doc: dict[str, Any], root: str = "") -> dict[str, Any]:
    """A job document as clients see it (API responses, webhooks): ISO times and links."""
    out = dict(doc)
    for key in ("created_at", "started_at", "finished_at", "expires_at"):
        out[key] = iso(doc[key])
    out["links"] = {
        "self": f"{root}/v1/jobs/{doc['id']}",
        "results": f"{root}/v1/jobs/{doc['id']}/results",
    }
    return out


def _float(value: str | None) -> float | None:
    return float(value) if value not in (None, "") else None
