"""Who is calling: optional API keys, and the per-caller rate limit.

Runs before every /v1 and /predict request. With keys off (the default for
local use) every caller is the anonymous owner "" and is rate-limited by
address; with keys on, a missing, unknown or revoked key is a 401, and jobs are
scoped to the key's owner id.
"""

from __future__ import annotations

from flask import g, request

from inkq import ratelimit
from inkq.apikeys import KeyRing
from inkq.errors import RateLimited, Unauthorized

from .services import services


def presented_key() -> str | None:
    header = request.headers.get("Authorization", "")
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return request.headers.get("X-API-Key") or None


#: Blueprints whose requests need a caller; health probes and the page do not.
GUARDED = ("jobs", "predict")


def authenticate() -> None:
    if request.blueprint not in GUARDED:
        return
    svc = services()
    key = presented_key()
    owner, who = "", f"addr:{request.remote_addr}"
    with svc.store.guard():
        if key is not None or svc.settings.require_api_key:
            info = KeyRing(svc.store.redis).check(key) if key else None
            if info is None:
                raise Unauthorized("A valid API key is required (Authorization: Bearer <key>).")
            owner = who = info.owner
        retry_after = ratelimit.hit(svc.store.redis, who, svc.settings.rate_limit_per_min)
    if retry_after:
        raise RateLimited(f"Rate limit of {svc.settings.rate_limit_per_min} requests per minute "
                          f"exceeded; retry in {retry_after} s.", retry_after_s=retry_after)
    g.owner = owner


def owner() -> str:
    return g.get("owner", "")
