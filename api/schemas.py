"""The API's request and response schemas: one definition, used twice.

Requests are validated with these models, and ``GET /openapi.json`` is built
from the same models (``model_json_schema``), so the documentation cannot
drift from what the code accepts and returns.
"""

from __future__ import annotations

from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, StrictStr

Status = Literal["queued", "running", "succeeded", "partially_succeeded", "failed", "cancelled"]

#: Results page size: the default and the most a client may ask for.
DEFAULT_PAGE, MAX_PAGE = 1000, 1000
#: Largest results offset accepted (far past any job's size).
MAX_OFFSET = 2**31 - 1


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class JobCreate(_Strict):
    """A bulk job: images in order, each a base64 PNG or a ``data:image/png;base64,`` URL."""

    # Any JSON value is taken in the list, so that one item that is not a
    # string (a null, a number) is an error on that item alone, like any other
    # bad image; the schema still says what an item should be.
    images: list[Any] = Field(min_length=1, description="Base64 PNGs or data URLs, in order.",
                              json_schema_extra={"items": {"type": "string"}})
    callback_url: StrictStr | None = Field(
        None, description="POSTed the job's status document once when it ends "
        "(host must be on INKQ_WEBHOOK_ALLOWED_HOSTS).")


class PredictRequest(_Strict):
    """One image to classify now."""

    image: StrictStr = Field(description="A base64 PNG or a data URL.")


class Candidate(BaseModel):
    label: str = Field(description='The character itself: "A", "7", "e".')
    prob: float = Field(ge=0, le=1)


class Prediction(BaseModel):
    """What ``POST /predict`` returns, and a classified item of a job without its index."""

    prediction: str
    confidence: float = Field(ge=0, le=1)
    top5: list[Candidate] = Field(min_length=1, max_length=5)


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="allow")

    code: str = Field(description="Stable machine-readable code, e.g. job_not_found, blank_image.")
    message: str


class ErrorBody(BaseModel):
    """Every error response."""

    error: ErrorDetail


class ClassifiedItem(Prediction):
    index: int = Field(ge=0)


class FailedItem(BaseModel):
    index: int = Field(ge=0)
    error: ErrorDetail


class Links(BaseModel):
    self: str
    results: str


class JobDocument(BaseModel):
    """A job's status and progress."""

    id: str
    status: Status
    total: int = Field(ge=1)
    done: int = Field(ge=0, description="Items finished, classified or not.")
    failed: int = Field(ge=0, description="Items with an error.")
    succeeded: int = Field(ge=0)
    created_at: str = Field(json_schema_extra={"format": "date-time"})
    started_at: str | None = Field(json_schema_extra={"format": "date-time"})
    finished_at: str | None = Field(json_schema_extra={"format": "date-time"})
    expires_at: str = Field(json_schema_extra={"format": "date-time"},
                            description="When the job and its results are deleted.")
    model_version: str | None
    callback_url: str | None
    links: Links


class ResultsPage(BaseModel):
    """Finished items with index in [offset, offset + limit), in input order."""

    items: list[Union[ClassifiedItem, FailedItem]]
    next: str | None = Field(description="URL of the next page; null on the last.")
    offset: int = Field(ge=0)
    limit: int = Field(ge=1, le=MAX_PAGE)
    total: int
    status: Status


class Limits(BaseModel):
    max_images_per_job: int
    max_request_bytes: int
    max_image_bytes: int
    max_image_pixels: int
    formats: list[str]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(BaseModel):
    status: Literal["ready", "not_ready"]
    checks: dict[str, str | int | None]


COMPONENTS = (JobCreate, PredictRequest, Prediction, ErrorBody, JobDocument, ResultsPage, Limits,
              Health, Readiness)
