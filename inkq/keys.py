"""Every Redis key inkq uses, one function per kind: the data layout on one screen.

A job's keys share the hash tag ``{<job id>}`` so a Redis Cluster would keep them
in one slot (the Lua scripts touch them together). All job keys expire with the
job (``INKQ_RESULT_TTL_S``).

==================================  ======  ================================================
key                                 type    holds
==================================  ======  ================================================
inkq:job:{id}                       hash    status, total, done, failed, timestamps, owner
inkq:job:{id}:images                list    the job's images, base64 text as sent, in order;
                                            deleted once the job has finished
inkq:job:{id}:results               hash    item index -> compact result (see jobstore)
inkq:job:{id}:webhook               string  lock held while the job's webhook is being sent
inkq:active                         zset    unfinished job id -> its last progress (epoch s)
inkq:requeue                        string  lock held by the worker looking for lost chunks
inkq:idem:{owner}:{sha256(key)}     string  job id for an ``Idempotency-Key``
inkq:reply:{request id}             list    the one reply to a POST /predict
inkq:workers                        zset    worker id -> last heartbeat (epoch s)
inkq:worker:{worker id}             hash    what a worker reports (model version, pid)
inkq:model_version                  string  the model version workers last announced
inkq:apikeys                        hash    sha256(API key) -> {name, created_at}
inkq:rate:{who}:{minute}            string  requests counted in one rate-limit window
==================================  ======  ================================================
"""

from __future__ import annotations

PREFIX = "inkq"


def job(job_id: str) -> str:
    return f"{PREFIX}:job:{{{job_id}}}"


def images(job_id: str) -> str:
    return f"{PREFIX}:job:{{{job_id}}}:images"


def results(job_id: str) -> str:
    return f"{PREFIX}:job:{{{job_id}}}:results"


def webhook_lock(job_id: str) -> str:
    return f"{PREFIX}:job:{{{job_id}}}:webhook"


def active() -> str:
    return f"{PREFIX}:active"


def requeue_lock() -> str:
    return f"{PREFIX}:requeue"


def idempotency(owner: str, key_digest: str) -> str:
    return f"{PREFIX}:idem:{owner}:{key_digest}"


def reply(request_id: str) -> str:
    return f"{PREFIX}:reply:{request_id}"


def workers() -> str:
    return f"{PREFIX}:workers"


def worker(worker_id: str) -> str:
    return f"{PREFIX}:worker:{worker_id}"


def model_version() -> str:
    return f"{PREFIX}:model_version"


def api_keys() -> str:
    return f"{PREFIX}:apikeys"


def rate(who: str, window: int) -> str:
    return f"{PREFIX}:rate:{who}:{window}"
