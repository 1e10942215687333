"""Reading request bodies against the schemas, and the size rules shared by routes."""

from __future__ import annotations

from typing import TypeVar

from flask import request
from pydantic import BaseModel, ValidationError

from inkq.errors import InvalidJSON, ValidationFailed

M = TypeVar("M", bound=BaseModel)

#: A data URL's prefix, on top of base64's 4/3.
_PREFIX_SLACK = 256


def max_image_chars(max_image_bytes: int) -> int:
    """The longest image string (base64, maybe a data URL) that can hold ``max_image_bytes``."""
    return max_image_bytes * 4 // 3 + _PREFIX_SLACK


def read_body(model: type[M]) -> M:
    """The request body validated against ``model``: 400 ``invalid_json`` or ``validation_failed``."""
    try:
        return model.model_validate_json(request.get_data(cache=False))
    except ValidationError as exc:
        problems = exc.errors(include_url=False, include_input=False)
        if any(p["type"] == "json_invalid" for p in problems):
            raise InvalidJSON("The request body is not valid JSON.") from None
        described = "; ".join(
            f"{'.'.join(map(str, p['loc'])) or 'body'}: {p['msg']}" for p in problems[:3])
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        raise ValidationFailed(f"The request does not match the schema: {described}{more}.") from None
