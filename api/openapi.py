"""The OpenAPI 3.1 document, assembled from the schemas in :mod:`api.schemas`.

Paths and their status codes are listed here once; every body schema comes
from the pydantic models the routes validate with.
"""

from __future__ import annotations

from functools import cache
from typing import Any

from pydantic.json_schema import models_json_schema

from inkq import __version__

from .schemas import COMPONENTS, DEFAULT_PAGE, MAX_OFFSET, MAX_PAGE

_REF = "#/components/schemas/{model}"

_ERRORS = {
    400: "Malformed JSON or a body that does not match the schema (`invalid_json`, `validation_failed`).",
    401: "An API key is required and was missing, unknown or revoked (`unauthorized`).",
    404: "No such job: unknown, expired, or created with another key (`job_not_found`).",
    413: "The body, the job or the image exceeds a limit (`payload_too_large`, `image_too_large`).",
    415: "The body is compressed, or one image sent as a whole job's body (`unsupported_media_type`).",
    422: "The image could not be classified (`invalid_base64`, `invalid_image`, `blank_image`, ...).",
    429: "Rate limited (`rate_limited`); retry after the `Retry-After` seconds.",
    503: "Redis unavailable or no worker running (`store_unavailable`, `no_workers`).",
    504: "No worker answered in time (`predict_timeout`).",
}


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(name: str, description: str, headers: dict | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"description": description,
                           "content": {"application/json": {"schema": _ref(name)}}}
    if headers:
        out["headers"] = headers
    return out


def _errors(*codes: int) -> dict[str, Any]:
    out = {}
    for code in codes:
        headers = None
        if code == 429:
            headers = {"Retry-After": {"description": "Seconds to wait.", "schema": {"type": "integer"}}}
        out[str(code)] = _json("ErrorBody", _ERRORS[code], headers)
    return out


#: An image file: a form upload's part, or the whole body.
_BINARY = {"type": "string", "format": "binary", "description": "The image file (PNG, JPEG, WebP, GIF, BMP)."}


def _form(field: str, *, many: bool, **others: dict) -> dict[str, Any]:
    """A multipart form carrying the image files in ``field`` (in order), plus ``others``."""
    files = {"type": "array", "items": _BINARY} if many else _BINARY
    return {"type": "object", "required": [field], "properties": {field: files, **others}}


_JOB_ID = {"name": "job_id", "in": "path", "required": True, "schema": {"type": "string"}}
#: What any /v1 or /predict request may meet: a key problem, the rate limit, Redis down.
_GUARDED = (401, 429, 503)


def _paths() -> dict[str, Any]:
    return {
        "/v1/jobs": {"post": {
            "operationId": "createJob",
            "summary": "Submit a bulk job",
            "description": "Stores the images and queues them in chunks. A bad image is an error "
                           "on its item, not on the request. The images may also come as files of a "
                           "multipart form, in `images`, in order, or as the `images` fields of a "
                           "form-encoded body.",
            "parameters": [{"name": "Idempotency-Key", "in": "header", "required": False,
                            "schema": {"type": "string", "maxLength": 255},
                            "description": "A retried submit with the same key returns the same job."}],
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("JobCreate")},
                "multipart/form-data": {"schema": _form("images", many=True, callback_url={"type": "string"})},
                "application/x-www-form-urlencoded": {"schema": _ref("JobCreate")},
            }},
            "responses": {
                "202": _json("JobDocument", "Accepted and queued.",
                             {"Location": {"description": "The job's URL.", "schema": {"type": "string"}}}),
                "200": _json("JobDocument", "The job an earlier request with this Idempotency-Key created."),
                "409": _json("ErrorBody", "A request with this Idempotency-Key is still being created."),
                **_errors(400, *_GUARDED, 413, 415),
            },
        }},
        "/v1/jobs/{job_id}": {
            "get": {
                "operationId": "getJob", "summary": "A job's status and progress",
                "parameters": [_JOB_ID],
                "responses": {"200": _json("JobDocument", "The job."), **_errors(*_GUARDED, 404)},
            },
            "delete": {
                "operationId": "cancelJob", "summary": "Cancel a job",
                "description": "Items not yet classified are skipped, even in chunks already reserved.",
                "parameters": [_JOB_ID],
                "responses": {"200": _json("JobDocument", "The job after cancelling."), **_errors(*_GUARDED, 404)},
            },
        },
        "/v1/jobs/{job_id}/results": {"get": {
            "operationId": "getResults", "summary": "A page of results, in input order",
            "parameters": [
                _JOB_ID,
                {"name": "offset", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 0, "maximum": MAX_OFFSET, "default": 0}},
                {"name": "limit", "in": "query", "required": False,
                 "schema": {"type": "integer", "minimum": 1, "maximum": MAX_PAGE, "default": DEFAULT_PAGE}},
            ],
            "responses": {"200": _json("ResultsPage", "Finished items of the page."),
                          **_errors(400, *_GUARDED, 404)},
        }},
        "/v1/limits": {"get": {
            "operationId": "getLimits", "summary": "The limits a client must keep to",
            "responses": {"200": _json("Limits", "The limits."), **_errors(*_GUARDED)},
        }},
        "/predict": {"post": {
            "operationId": "predict", "summary": "Classify one image now",
            "description": "Goes through the same queue and workers as bulk jobs, on its own queue. "
                           "The image may also come as the file `image` of a multipart form, the "
                           "field `image` of a form-encoded body, or the body itself: the file "
                           "(whatever the content type says), or a data URL or base64 as text.",
            "requestBody": {"required": True, "content": {
                "application/json": {"schema": _ref("PredictRequest")},
                "multipart/form-data": {"schema": _form("image", many=False)},
                "application/x-www-form-urlencoded": {"schema": _ref("PredictRequest")},
                "image/*": {"schema": _BINARY},
                "application/octet-stream": {"schema": _BINARY},
                "text/plain": {"schema": {"type": "string", "description": "A data URL or base64."}},
            }},
            "responses": {"200": _json("Prediction", "The top-5 characters."),
                          **_errors(400, *_GUARDED, 413, 415, 422, 504)},
        }},
        "/healthz": {"get": {
            "operationId": "healthz", "summary": "Liveness", "security": [],
            "responses": {"200": _json("Health", "The process answers.")},
        }},
        "/readyz": {"get": {
            "operationId": "readyz", "summary": "Readiness: Redis answers and a worker with a model is alive",
            "security": [],
            "responses": {"200": _json("Readiness", "Ready."), "503": _json("Readiness", "Not ready.")},
        }},
        "/metrics": {"get": {
            "operationId": "metrics", "summary": "Prometheus metrics", "security": [],
            "responses": {"200": {"description": "Prometheus text exposition.",
                                  "content": {"text/plain": {"schema": {"type": "string"}}}},
                          **_errors(503)},
        }},
    }


@cache
def document() -> dict[str, Any]:
    _, defs = models_json_schema([(m, "validation") for m in COMPONENTS], ref_template=_REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "inkq",
            "version": __version__,
            "description": "Queue-backed batch handwriting recognition (EMNIST, 47 classes). "
                           "Every error is `{\"error\": {\"code\", \"message\"}}`.",
        },
        "paths": _paths(),
        "components": {
            "schemas": defs["$defs"],
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer",
                           "description": "An API key from `inkq keys add` (when keys are required)."},
                "apiKey": {"type": "apiKey", "in": "header", "name": "X-API-Key"},
            },
        },
        # Keys are optional unless INKQ_REQUIRE_API_KEY is on.
        "security": [{}, {"bearer": []}, {"apiKey": []}],
    }
