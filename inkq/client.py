"""Python client for the inkq HTTP API (version 1).

Why a client at all: scripts, the CLI and the benchmarks all need the same few
things done right once -- encode images the way the API wants them, split big
batches so no request breaks the server's limits, retry politely when the
service says "later" (429/503, honouring ``Retry-After``) or the network
blinks, and turn API error bodies back into the project's own exception types
so callers can ``except inkq.errors.JobNotFound`` instead of parsing JSON::

    from inkq.client import Client

    with Client("http://127.0.0.1:8000") as client:
        job = client.submit([open("a.png", "rb").read()])
        client.wait(job["id"], progress=lambda j: print(j["done"], "/", j["total"]))
        for item in client.results(job["id"]):
            print(item["index"], item.get("prediction"), item.get("error"))

Retries are safe for every call: reads and ``DELETE`` are idempotent, and
``submit`` always sends an ``Idempotency-Key`` (a fresh one when the caller
gives none) so a resent request returns the job the first one created.

Only httpx is imported here (no numpy, no Flask): the client must stay cheap to
install and import.
"""

from __future__ import annotations

import base64
import email.utils
import math
import os
import random
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

import httpx
import orjson

from inkq import errors
from inkq.imagetypes import media_type

DEFAULT_URL = "http://127.0.0.1:8000"
#: Per-request timeout in seconds (connect, read, write, pool).
DEFAULT_TIMEOUT_S = 30.0
#: Retries after the first attempt, for 429, 503 and connection errors.
DEFAULT_RETRIES = 4
#: First backoff delay in seconds; doubles every attempt.
BACKOFF_BASE_S = 0.25
#: Longest single backoff delay in seconds.
BACKOFF_CAP_S = 8.0
#: Longest ``Retry-After`` in seconds the client agrees to sleep; a server asking
#: for more is answered by raising at once rather than blocking a script for minutes.
MAX_RETRY_AFTER_S = 60.0
#: Seconds between two polls of a job in :meth:`Client.wait`.
POLL_INTERVAL_S = 0.5
#: The first poll comes this soon; the interval then grows to POLL_INTERVAL_S.
FIRST_POLL_S = 0.05
#: Results page size in items (the API's maximum).
RESULTS_PAGE_SIZE = 1000

FINISHED_STATUSES = frozenset({"succeeded", "partially_succeeded", "failed", "cancelled"})
RETRY_STATUSES = frozenset({429, 503})

#: File names a folder's images are found by: the formats workers read
#: (``worker.preprocess.ACCEPTED_FORMATS``).
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"})

#: The longest data URL prefix :func:`encode_image` writes.
_PREFIX_MAX = len("data:image/jpeg;base64,")

#: Bytes of JSON around the list of images in a submit body (``{"images": []}``)
#: plus slack, and around each image (two quotes, a comma).
_BODY_OVERHEAD_BYTES = 64
_PER_IMAGE_OVERHEAD_BYTES = 4

#: Fallback error codes for error responses without a JSON error body (a proxy's
#: HTML page, say), so they still map onto the right exception type.
_CODE_BY_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_image",
    429: "rate_limited",
    502: "service_unavailable",
    503: "service_unavailable",
    504: "predict_timeout",
}

Image = bytes | str | os.PathLike[str]
Progress = Callable[[dict[str, Any]], None]


# --------------------------------------------------------------------------- pure helpers


def encode_image(image: Image) -> str:
    """The string the API accepts for one image.

    Raw bytes become a data URL of their format (PNG unless the bytes say
    otherwise; the server reads the bytes, not the label); a string is passed
    through unchanged (the API takes data URLs and bare base64 alike, so
    re-encoding would only cost time); a path is read and encoded, for
    convenience in notebooks.
    """
    if isinstance(image, (bytes, bytearray, memoryview)):
        data = bytes(image)
        return f"data:{media_type(data) or 'image/png'};base64," + base64.b64encode(data).decode("ascii")
    if isinstance(image, str):
        return image
    if isinstance(image, os.PathLike):
        return encode_image(Path(image).read_bytes())
    raise TypeError(f"an image is bytes, a base64/data-URL str or a path, not {type(image).__name__}")


def encoded_size(raw_bytes: int) -> int:
    """Bytes one raw image of ``raw_bytes`` takes in a submit body (data URL + JSON)."""
    return _PREFIX_MAX + 4 * math.ceil(raw_bytes / 3) + _PER_IMAGE_OVERHEAD_BYTES


def plan_batches(sizes: Sequence[int], max_images: int, max_request_bytes: int) -> list[range]:
    """Split images, given their encoded sizes, into consecutive batches within limits.

    Greedy and order-preserving, so result index ``i`` of batch ``b`` is input
    ``b.start + i``. An image too big for any request is an error up front:
    better to refuse before submitting anything than to leave half a folder queued.
    """
    if max_images < 1:
        raise ValueError("max_images must be at least 1")
    budget = max_request_bytes - _BODY_OVERHEAD_BYTES
    batches: list[range] = []
    start, used = 0, 0
    for i, size in enumerate(sizes):
        if size > budget:
            raise errors.PayloadTooLarge(
                f"image {i} takes {size} bytes encoded; a request may hold at most {max_request_bytes}",
                index=i,
            )
        if i > start and (i - start >= max_images or used + size > budget):
            batches.append(range(start, i))
            start, used = i, 0
        used += size
    if start < len(sizes):
        batches.append(range(start, len(sizes)))
    return batches


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP date), or None."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def backoff_delay(
    attempt: int,
    retry_after_s: float | None = None,
    *,
    base_s: float = BACKOFF_BASE_S,
    cap_s: float = BACKOFF_CAP_S,
    rng: Callable[[], float] = random.random,
) -> float:
    """Seconds to sleep before retry number ``attempt`` (0-based).

    The server's ``Retry-After`` wins when given (never retry earlier than asked;
    up to 10 % extra so many clients told the same number don't return in
    lockstep). Otherwise exponential backoff with "equal jitter": half the
    doubled delay fixed, half random, so retries spread out but never collapse
    to zero.
    """
    if retry_after_s is not None:
        return retry_after_s * (1.0 + 0.1 * rng())
    ceiling = min(cap_s, base_s * (2**attempt))
    return ceiling / 2 + (ceiling / 2) * rng()


def error_from_response(response: httpx.Response) -> errors.InkqError:
    """The inkq exception an error response stands for, keeping the API's code."""
    body: Any = None
    try:
        body = response.json()
    except ValueError:
        pass
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        detail = dict(body["error"])
    else:
        # Not the API's own answer: a wrong URL (another server) or a proxy in front.
        text = response.text.strip().splitlines()[0][:200] if response.text.strip() else ""
        detail = {
            "code": _CODE_BY_STATUS.get(response.status_code, "internal_error"),
            "message": f"HTTP {response.status_code} {response.reason_phrase}"
            + (f": {text}" if text else "")
            + f" (not an answer of the inkq API; is {_where(response.request.url)} right?)",
        }
    if response.status_code == 429 and "retry_after_s" not in detail:
        retry_after = parse_retry_after(response.headers.get("Retry-After"))
        if retry_after is not None:
            detail["retry_after_s"] = math.ceil(retry_after)
    return errors.from_dict(detail, response.status_code)


def _where(url: httpx.URL) -> str:
    """The URL without credentials or query, to show in a message."""
    return f"{url.scheme}://{url.netloc.decode('ascii')}{url.path}"


def is_finished(job: dict[str, Any]) -> bool:
    """Whether a job document is in a final state."""
    return job.get("status") in FINISHED_STATUSES


def find_images(paths: Iterable[str | os.PathLike[str]]) -> list[Path]:
    """Image files named by ``paths``: files as given, folders searched
    recursively for :data:`IMAGE_SUFFIXES`, sorted.

    Each folder's images are sorted by path so runs are reproducible; the order of
    the arguments themselves is kept. Files named explicitly are taken whatever
    their extension (the server reports what it can't read, per item).
    """
    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.exists():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or folder: {path}")
    return found


# --------------------------------------------------------------------------- client


class Client:
    """A connection to one inkq API server.

    ``retries`` is how many times a request is resent after a 429, a 503 or a
    connection error; every other error is raised at once as the matching
    :mod:`inkq.errors` type. Use it as a context manager, or call :meth:`close`.
    """

    def __init__(
        self,
        base_url: str = DEFAULT_URL,
        api_key: str | None = None,
        timeout: float = DEFAULT_TIMEOUT_S,
        retries: int = DEFAULT_RETRIES,
        *,
        sleep: Callable[[float], None] = time.sleep,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self._sleep = sleep
        headers = {"Accept": "application/json", "User-Agent": "inkq-client/1"}
        if api_key:
            headers["Authorization"] = f"Bearer {api_key}"
        self._http = httpx.Client(
            base_url=self.base_url, headers=headers, timeout=timeout, transport=transport
        )

    # -- lifecycle

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the underlying connection pool."""
        self._http.close()

    # -- transport

    def _request(
        self, method: str, url: str, *, retry_statuses: frozenset[int] = RETRY_STATUSES, **kwargs: Any
    ) -> Any:
        """Send a request with retries; return the decoded JSON body or raise an inkq error."""
        attempt = 0
        while True:
            try:
                response = self._http.request(method, url, **kwargs)
            except httpx.TransportError as exc:
                if attempt >= self.retries:
                    raise errors.ServiceUnavailable(
                        f"cannot reach the inkq service at {self.base_url} "
                        f"after {attempt + 1} attempts: {exc or type(exc).__name__}",
                        url=self.base_url,
                    ) from exc
                self._sleep(backoff_delay(attempt))
                attempt += 1
                continue
            if response.status_code < 400:
                try:
                    return response.json()
                except ValueError as exc:
                    raise errors.InkqError(
                        f"{method} {url}: HTTP {response.status_code} without a JSON body; "
                        f"is {self.base_url} an inkq server?",
                        code="bad_response",
                    ) from exc
            if response.status_code in retry_statuses and attempt < self.retries:
                retry_after = parse_retry_after(response.headers.get("Retry-After"))
                if retry_after is None or retry_after <= MAX_RETRY_AFTER_S:
                    self._sleep(backoff_delay(attempt, retry_after))
                    attempt += 1
                    continue
            raise error_from_response(response)

    # -- API

    def limits(self) -> dict[str, Any]:
        """The server's limits: images per job, request/image bytes, pixels, formats."""
        return self._request("GET", "/v1/limits")

    def submit(self, images: Sequence[Image], idempotency_key: str | None = None) -> dict[str, Any]:
        """Queue ``images`` as one job; returns the job document (status ``queued``).

        Images are raw image bytes (PNG, JPEG, WebP, GIF, BMP), base64 or data-URL strings (or paths). The
        request must fit the server's limits; :meth:`submit_files` splits for you.
        """
        key = idempotency_key or uuid.uuid4().hex
        # orjson: a 3,000-image body encodes in a fraction of the standard library's time.
        body = orjson.dumps({"images": [encode_image(image) for image in images]})
        # 409: a resent request raced the first one, which is still creating the job.
        return self._request(
            "POST", "/v1/jobs", content=body,
            headers={"Idempotency-Key": key, "Content-Type": "application/json"},
            retry_statuses=RETRY_STATUSES | {409},
        )

    def submit_files(
        self, paths: Iterable[str | os.PathLike[str]], idempotency_prefix: str | None = None
    ) -> list[dict[str, Any]]:
        """Submit image files and folders (searched recursively, sorted) as as few jobs as fit.

        Returns one job document per job, in input order, each with an extra
        ``files`` key: the paths it holds, so result ``index`` i of that job is
        ``files[i]``. Files are read one batch at a time, not all at once.
        With ``idempotency_prefix``, batch ``n`` is sent with key
        ``f"{prefix}-{n}"``, so rerunning the same command returns the same jobs.
        """
        files = find_images(paths)
        if not files:
            return []
        limits = self.limits()
        sizes = [encoded_size(f.stat().st_size) for f in files]
        batches = plan_batches(
            sizes, int(limits["max_images_per_job"]), int(limits["max_request_bytes"])
        )
        jobs = []
        for n, batch in enumerate(batches):
            chunk = files[batch.start : batch.stop]
            key = f"{idempotency_prefix}-{n}" if idempotency_prefix else None
            job = self.submit([f.read_bytes() for f in chunk], idempotency_key=key)
            jobs.append({**job, "files": [str(f) for f in chunk]})
        return jobs

    def job(self, job_id: str) -> dict[str, Any]:
        """The job document: status, counts and timestamps."""
        return self._request("GET", f"/v1/jobs/{job_id}")

    def wait(
        self,
        job_id: str,
        progress: Progress | None = None,
        poll_interval_s: float = POLL_INTERVAL_S,
        timeout_s: float | None = None,
    ) -> dict[str, Any]:
        """Poll until the job finishes; return its final document.

        Polls soon at first (a small job is done in a fraction of a second), then
        less often, up to every ``poll_interval_s``. ``progress`` is called with
        every document polled, the last one included.
        ``timeout_s`` bounds the wait: past it, ``errors.WaitTimeout`` (a
        ``TimeoutError``) is raised and the job keeps running on the server.
        """
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        delay = min(FIRST_POLL_S, poll_interval_s)
        while True:
            job = self.job(job_id)
            if progress is not None:
                progress(job)
            if is_finished(job):
                return job
            if deadline is not None and time.monotonic() >= deadline:
                raise errors.WaitTimeout(f"job {job_id} still {job.get('status')} after {timeout_s} s")
            self._sleep(delay)
            delay = min(delay * 1.5, poll_interval_s)

    def results(self, job_id: str, page_size: int = RESULTS_PAGE_SIZE) -> Iterator[dict[str, Any]]:
        """Every finished item of the job in input order, following ``next`` across pages.

        Read after the job finished to get all items; while it runs, only the
        items already classified appear.
        """
        url: str | None = f"/v1/jobs/{job_id}/results"
        params: dict[str, int] | None = {"offset": 0, "limit": page_size}
        while url:
            page = self._request("GET", url, params=params)
            yield from page.get("items", [])
            url, params = page.get("next"), None

    def predict(self, image: Image) -> dict[str, Any]:
        """Classify one image synchronously: ``{"prediction", "confidence", "top5"}``.

        An image the service can't use raises an :class:`inkq.errors.ItemError`
        subclass (``InvalidImage``, ``BlankImage``, ...).
        """
        return self._request("POST", "/predict", json={"image": encode_image(image)})

    def cancel(self, job_id: str) -> dict[str, Any]:
        """Cancel a job; items not yet classified are skipped. Returns the job document."""
        return self._request("DELETE", f"/v1/jobs/{job_id}")
