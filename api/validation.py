"""Reading request bodies against the schemas, and the size rules shared by routes."""

from __future__ import annotations

from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from inkq.errors import InvalidJSON, UnsupportedMediaType, ValidationFailed

M = TypeVar("M", bound=BaseModel)

#: A data URL's prefix, on top of base64's 4/3.
_PREFIX_SLACK = 256


def max_image_chars(max_image_bytes: int) -> int:
    """The longest image string (base64, maybe a data URL) that can hold ``max_image_bytes``."""
    return max_image_bytes * 4 // 3 + _PREFIX_SLACK


#: Content types that say the body is something other than JSON. Any other
#: type (none, text/plain as fetch() sends strings, or curl -d's form type)
#: is parsed as JSON all the same.
_NOT_JSON = ("multipart/", "image/", "application/octet-stream")


def read_body(model: type[M]) -> M:
    """The request body validated against ``model``: 400 ``invalid_json`` or
    ``validation_failed``; 415 ``unsupported_media_type`` for a compressed body,
    and for a form or file upload that is not JSON. A leading UTF-8 byte order
    mark is skipped (RFC 8259 lets a parser ignore it)."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; send the JSON body uncompressed.")
    body = request.get_data(cache=False)
    if body[:3] == b"\xef\xbb\xbf":  # a UTF-8 byte order mark (some Windows tools write one)
        body = body[3:]
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_input=False)
        if any(p["type"] == "json_invalid" for p in problems):
            if request.mimetype.startswith(_NOT_JSON):
                raise UnsupportedMediaType(
                    f"The body must be JSON (application/json), not {request.mimetype}; images travel "
                    "inside it as base64 strings or data URLs.") from None
            raise InvalidJSON("The request body is not valid JSON.") from None
        described = "; ".join(
            f"{'.'.join(map(str, p['loc'])) or 'body'}: {p['msg']}" for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValidationFailed(f"The request does not match the schema: {described}{more}.") from None
