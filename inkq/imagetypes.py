"""Image formats told by their first bytes: the client labels a file's data URL
with what it holds, and the API takes a body that is an image for one, whatever
its content type says."""

from __future__ import annotations

#: How the formats workers read begin (``worker.preprocess.ACCEPTED_FORMATS``;
#: WebP is ``RIFF``, a size, then ``WEBP``).
_MAGIC = ((b"\x89PNG", "image/png"), (b"\xff\xd8\xff", "image/jpeg"), (b"GIF8", "image/gif"),
          (b"BM", "image/bmp"))


def media_type(data: bytes) -> str | None:
    """The media type of an image file's bytes; None when they begin as none of them."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return next((media for magic, media in _MAGIC if data.startswith(magic)), None)
