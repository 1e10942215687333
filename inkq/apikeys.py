"""API keys: issued once, stored only as sha256 digests, checked on every request.

A key is 32 random bytes (URL-safe text), so a plain sha256 is as strong as a
slow password hash would be. The key itself is shown once by ``inkq keys add``
and never stored or logged. A job belongs to the key that created it, by the
key's digest, so a revoked and re-issued name does not inherit old jobs.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass

import orjson
import redis

from . import keys

KEY_PREFIX = "inkq_"


def digest(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


@dataclass(frozen=True)
class KeyInfo:
    name: str
    digest: str
    created_at: float

    @property
    def owner(self) -> str:
        """What jobs and idempotency keys are scoped by."""
        return self.digest[:32]


class KeyRing:
    """The API keys in Redis: ``inkq:apikeys`` maps digest -> {name, created_at}."""

    def __init__(self, client: redis.Redis):
        self.redis = client

    def add(self, name: str) -> str:
        """Issue a key named ``name``; returns the key (shown once)."""
        if not name or len(name) > 64:
            raise ValueError("a key name is 1 to 64 characters")
        if self.find(name) is not None:
            raise ValueError(f"a key named {name!r} exists; revoke it first")
        key = KEY_PREFIX + secrets.token_urlsafe(32)
        self.redis.hset(keys.api_keys(), digest(key),
                        orjson.dumps({"name": name, "created_at": time.time()}))
        return key

    def list(self) -> list[KeyInfo]:
        out = []
        for d, raw in self.redis.hgetall(keys.api_keys()).items():
            meta = orjson.loads(raw)
            out.append(KeyInfo(meta["name"], d.decode(), meta["created_at"]))
        return sorted(out, key=lambda k: k.name)

    def find(self, name: str) -> KeyInfo | None:
        return next((k for k in self.list() if k.name == name), None)

    def revoke(self, name: str) -> bool:
        info = self.find(name)
        if info is None:
            return False
        self.redis.hdel(keys.api_keys(), info.digest)
        return True

    def check(self, key: str) -> KeyInfo | None:
        """The key's record if it is valid, else None."""
        d = digest(key)
        raw = self.redis.hget(keys.api_keys(), d)
        if raw is None:
            return None
        # The lookup is by digest; compare once more in constant time all the same.
        if not hmac.compare_digest(d, digest(key)):
            return None
        meta = orjson.loads(raw)
        return KeyInfo(meta["name"], d, meta["created_at"])
