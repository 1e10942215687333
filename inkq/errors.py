"""The one exception tree of inkq.

Every error a user can see carries a stable machine-readable ``code`` and the
HTTP status the API answers it with, so the API needs a single handler and the
client can raise the same types back from a response::

    InkqError                         500 internal_error
    ├── BadRequest(ValueError)        400 bad_request
    │   ├── InvalidJSON               400 invalid_json
    │   └── ValidationFailed          400 validation_failed
    ├── Unauthorized                  401 unauthorized
    ├── NotFound(LookupError)         404 not_found
    │   └── JobNotFound               404 job_not_found
    ├── Conflict                      409 conflict
    ├── PayloadTooLarge               413 payload_too_large
    ├── UnsupportedMediaType          415 unsupported_media_type
    ├── RateLimited                   429 rate_limited
    ├── ServiceUnavailable            503 service_unavailable
    │   ├── StoreUnavailable          503 store_unavailable
    │   └── NoWorkers                 503 no_workers
    ├── PredictTimeout(TimeoutError)  504 predict_timeout
    ├── WaitTimeout(TimeoutError)         wait_timeout (client side: a job outlasted a wait)
    ├── ModelError(RuntimeError)      500 model_error
    │   └── ArtifactMismatch          500 artifact_mismatch
    └── ItemError(ValueError)         per-item error inside a job, never a request failure
        ├── InvalidBase64             invalid_base64
        ├── InvalidImage              invalid_image
        ├── UnsupportedFormat         unsupported_format
        ├── ImageTooLarge             image_too_large
        └── BlankImage                blank_image
"""

from __future__ import annotations

from typing import Any


class InkqError(Exception):
    """Base of every inkq error."""

    status_code: int = 500
    code: str = "internal_error"

    def __init__(self, message: str | None = None, *, code: str | None = None, **details: Any):
        if message is None:
            message = (type(self).__doc__ or "").strip().splitlines()[0] if type(self).__doc__ else ""
        self.message = message
        if code is not None:
            self.code = code
        self.details = details
        super().__init__(self.message)

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of this error: ``{"code", "message", ...details}``."""
        return {"code": self.code, "message": self.message, **self.details}


class BadRequest(InkqError, ValueError):
    """The request is malformed."""

    status_code = 400
    code = "bad_request"


class InvalidJSON(BadRequest):
    """The request body is not valid JSON."""

    code = "invalid_json"


class ValidationFailed(BadRequest):
    """The request does not match the expected schema."""

    code = "validation_failed"


class Unauthorized(InkqError):
    """A valid API key is required."""

    status_code = 401
    code = "unauthorized"


class NotFound(InkqError, LookupError):
    """No such resource."""

    status_code = 404
    code = "not_found"


class JobNotFound(NotFound):
    """No such job (it never existed, has expired, or belongs to another key)."""

    code = "job_not_found"


class Conflict(InkqError):
    """The request conflicts with the current state."""

    status_code = 409
    code = "conflict"


class PayloadTooLarge(InkqError):
    """The request exceeds a configured limit."""

    status_code = 413
    code = "payload_too_large"


class UnsupportedMediaType(InkqError):
    """The body is in a form the API does not read: compressed, or one image sent as a whole job."""

    status_code = 415
    code = "unsupported_media_type"


class RateLimited(InkqError):
    """Too many requests; retry after the given number of seconds."""

    status_code = 429
    code = "rate_limited"

    def __init__(self, message: str | None = None, *, retry_after_s: int = 1, **details: Any):
        self.retry_after_s = retry_after_s
        super().__init__(message, retry_after_s=retry_after_s, **details)


class ServiceUnavailable(InkqError):
    """The service cannot answer right now; retry later."""

    status_code = 503
    code = "service_unavailable"


class StoreUnavailable(ServiceUnavailable):
    """The Redis store is unreachable or not answering in time."""

    code = "store_unavailable"


class NoWorkers(ServiceUnavailable):
    """No worker answered."""

    code = "no_workers"


class PredictTimeout(InkqError, TimeoutError):
    """No worker classified the image in time."""

    status_code = 504
    code = "predict_timeout"


class WaitTimeout(InkqError, TimeoutError):
    """A job did not finish within the time a client was willing to wait."""

    status_code = 408
    code = "wait_timeout"


class ModelError(InkqError, RuntimeError):
    """The model could not be loaded or used."""

    code = "model_error"


class ArtifactMismatch(ModelError):
    """The model artifact does not match its model card (tampered, or wrong library version)."""

    code = "artifact_mismatch"


class ItemError(InkqError, ValueError):
    """One image of a job could not be classified; the rest of the job goes on."""

    status_code = 422
    code = "invalid_image"


class InvalidBase64(ItemError):
    """The image is not valid base64."""

    code = "invalid_base64"


class InvalidImage(ItemError):
    """The bytes are not a decodable image."""

    code = "invalid_image"


class UnsupportedFormat(ItemError):
    """The image format is not accepted."""

    code = "unsupported_format"


class ImageTooLarge(ItemError):
    """The image exceeds the byte or pixel limit."""

    code = "image_too_large"


class BlankImage(ItemError):
    """The image holds no drawing (blank or near-blank canvas)."""

    code = "blank_image"


#: Error classes by code, so a client can raise the same type the server meant.
BY_CODE: dict[str, type[InkqError]] = {}


def _register(cls: type[InkqError]) -> None:
    BY_CODE.setdefault(cls.code, cls)
    for sub in cls.__subclasses__():
        _register(sub)


_register(InkqError)


def from_dict(body: dict[str, Any], status_code: int | None = None) -> InkqError:
    """Rebuild an error from its JSON form (``{"code", "message", ...}``)."""
    code = str(body.get("code", "internal_error"))
    cls = BY_CODE.get(code, InkqError)
    details = {k: v for k, v in body.items() if k not in ("code", "message")}
    if cls is RateLimited:
        err: InkqError = RateLimited(body.get("message"), **details)
    else:
        err = cls(body.get("message"), code=code, **details)
    if status_code is not None:
        err.status_code = status_code
    return err
