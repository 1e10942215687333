"""Reading request bodies against the schemas, and the size rules shared by routes."""

from __future__ import annotations

import base64
import json
from typing import Any, TypeVar
from urllib.parse import parse_qsl

from flask import request
from pydantic import BaseModel, ValidationError
from werkzeug.exceptions import RequestEntityTooLarge

from inkq.errors import InvalidJSON, PayloadTooLarge, UnsupportedMediaType, ValidationFailed
from inkq.imagetypes import media_type

M = TypeVar("M", bound=BaseModel)

#: A data URL's prefix, on top of base64's 4/3.
_PREFIX_SLACK = 256


def max_image_chars(max_image_bytes: int) -> int:
    """The longest image string (base64, maybe a data URL) that can hold ``max_image_bytes``."""
    return max_image_bytes * 4 // 3 + _PREFIX_SLACK


#: Content types of a body that is the image itself (``curl --data-binary @x.png``).
_RAW_IMAGE = ("image/", "application/octet-stream")

#: An HTML form's body, or ``curl -d image=...``'s.
_URLENCODED = "application/x-www-form-urlencoded"

#: How a data URL and the base64 of a PNG, JPEG, GIF and WebP begin: a body that
#: begins so, or as an image file (:func:`inkq.imagetypes.media_type`), is an
#: image whatever its content type says (``curl --data-binary @x.png`` calls it
#: a form, ``fetch`` calls a data URL text/plain).
_BASE64_MAGIC = (b"data:", b"iVBORw0KGgo", b"/9j/", b"R0lGOD", b"UklGR")


#: Commas a JSON body may hold beyond two per image (a data URL holds one, and
#: one separates it from the next) and those of the other fields.
_COMMA_SLACK = 64


def read_body(model: type[M], max_images: int = 1) -> M:
    """The request body validated against ``model``: 400 ``invalid_json`` or
    ``validation_failed``; 415 ``unsupported_media_type`` for a compressed body.

    JSON is read whatever the content type says (fetch() sends strings as
    text/plain, curl -d as a form); a leading UTF-8 byte order mark is
    skipped (RFC 8259 lets a parser ignore it). A form-encoded body that is
    not JSON is read as the form's fields (``curl -d image=<base64>``).
    Images may also arrive as files: a multipart form (``curl -F
    image=@x.png``; a job's in ``images``, in order, its other fields as form
    fields), or for one image the body itself: with an image's content type,
    or any body that begins as an image file, a data URL or an image's
    base64 does (``curl --data-binary @x.png``, ``fetch(url, {body:
    canvas.toDataURL()})``). They are base64-encoded here, so the rest of the
    service sees the same request either way.

    A JSON body is parsed whole before it is validated, at some 100 bytes of
    memory a value, so a body of millions of tiny values (``[0,0,0,...]``) is
    refused before parsing: one that holds more commas than ``max_images``
    images can need is a 413.
    """
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise UnsupportedMediaType(
            f"Content-Encoding {encoding!r} is not supported; send the body uncompressed.")
    _whole_body()
    field, many = _image_field(model)
    if request.mimetype == "multipart/form-data":
        return _validated(model, _form(field, many))
    body = request.get_data(cache=False)
    if request.mimetype.startswith(_RAW_IMAGE):
        image = _b64(body)
    else:
        body = _as_utf8(body)
        image = _bare_image(body)
    if image is not None:
        if many:
            raise UnsupportedMediaType(
                f"The body is one image; send a job's images as JSON or as files named {field!r} in "
                "a multipart form.")
        return _validated(model, {field: image})
    if request.mimetype == _URLENCODED and not body.lstrip(b"\xef\xbb\xbf \t\r\n").startswith((b"{", b"[")):
        return _validated(model, _urlencoded(body, field, many, max_images))
    if body.count(b",") > 2 * max_images + _COMMA_SLACK:
        raise _too_many("The body holds more JSON values", max_images)
    if body[:3] == b"\xef\xbb\xbf":  # a UTF-8 byte order mark (some Windows tools write one)
        body = body[3:]
    try:
        return model.model_validate_json(body)
    except ValidationError as exc:
        for problem in exc.errors(include_url=False, include_input=False):
            if problem["type"] == "json_invalid":  # the parser's words say where: "... at line 1 column 2"
                where = problem["msg"].removeprefix("Invalid JSON: ")
                raise InvalidJSON(f"The request body is not valid JSON: {where}.") from None
        raise _failed(exc) from None


def _as_utf8(body: bytes) -> bytes:
    """A text body in UTF-16 or UTF-32 (Windows PowerShell 5 writes files in
    UTF-16 with a byte order mark), told apart by its first four bytes as
    :func:`json.loads` does, in UTF-8; any other body as it is."""
    encoding = json.detect_encoding(body[:4])
    if encoding in ("utf-8", "utf-8-sig"):
        return body
    try:
        return body.decode(encoding).encode("utf-8")
    except UnicodeError:
        raise InvalidJSON(f"The request body is not valid {encoding.upper()} text (its first bytes say it is).") from None


def _whole_body() -> None:
    """Refuse a body of unknown length (chunked) that reaches the size limit.

    werkzeug stops reading such a body at ``MAX_CONTENT_LENGTH`` without an
    error, and what it read would be parsed as the whole body: a form cut
    there still parses, short of its last images. So the body is read here
    (kept for the parsers) and refused when it is that long.
    """
    limit = request.max_content_length
    if request.content_length is None and limit is not None and len(request.get_data()) >= limit:
        raise RequestEntityTooLarge()


def _bare_image(body: bytes) -> str | None:
    """The body as an image string when it is one image by itself (the file,
    a data URL or base64: see :data:`_BASE64_MAGIC`); None for anything else."""
    if media_type(body):
        return _b64(body)
    text = body.lstrip()  # strip() would copy a whole JSON body for its final newline
    if text.startswith(_BASE64_MAGIC):
        return text.rstrip().decode("latin-1")
    return None


def _image_field(model: type[BaseModel]) -> tuple[str, bool]:
    """The model's image field, and whether it holds a list of images."""
    return ("images", True) if "images" in model.model_fields else ("image", False)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _form(field: str, many: bool) -> dict[str, Any]:
    """A multipart form as the JSON body it stands for."""
    files = request.files.getlist(field)
    if not files:  # files under other names: take them all
        files = [f for _, f in request.files.items(multi=True)]
    data: dict[str, Any] = {k: v for k, v in request.form.items() if k != field}
    images = [_b64(f.read()) for f in files] or request.form.getlist(field)
    return _with_images(data, field, many, images)


def _urlencoded(body: bytes, field: str, many: bool, max_images: int) -> dict[str, Any]:
    """A form-encoded body as the JSON body it stands for. Base64's ``+`` reads
    as a space unless the client escaped it, and a space is never base64, so
    the images' spaces are read back as ``+``."""
    try:
        pairs = parse_qsl(body.decode("latin-1"), keep_blank_values=True,
                          max_num_fields=max_images + _COMMA_SLACK)
    except ValueError:
        raise _too_many("The form holds more fields", max_images) from None
    data: dict[str, Any] = {k: v for k, v in pairs if k != field}
    images = [v.replace(" ", "+") for k, v in pairs if k == field]
    return _with_images(data, field, many, images)


def _too_many(what: str, max_images: int) -> PayloadTooLarge:
    """413 for a body holding more parts than any request within the limit needs."""
    images = f"{max_images} image{'s' if max_images > 1 else ''}"
    return PayloadTooLarge(f"{what} than a request of at most {images} can.", limit=max_images)


def _with_images(data: dict[str, Any], field: str, many: bool, images: list[str]) -> dict[str, Any]:
    """``data`` with the form's images under ``field``: a list for a job, one for /predict."""
    if many:
        data[field] = images
    elif len(images) > 1:
        raise ValidationFailed(f"One image per request here, and the form holds {len(images)}; "
                               "send several as a job (POST /v1/jobs).")
    elif images:
        data[field] = images[0]
    return data


def _validated(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise _failed(exc) from None


def _failed(exc: ValidationError) -> ValidationFailed:
    problems = exc.errors(include_url=False, include_input=False)
    described = "; ".join(f"{_where(p['loc'])}: {p['msg']}" for p in problems[:3])
    more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
    return ValidationFailed(f"The request does not match the schema: {described}{more}.")


def _where(loc: tuple) -> str:
    """A problem's place in the body, its names cut to 40 characters (a form's
    field names are whatever the client sent)."""
    return ".".join(str(part)[:40] + ("…" if len(str(part)) > 40 else "") for part in loc) or "body"
