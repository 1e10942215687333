"""Hostile and odd images for the bad-input tests: every way a PNG can go wrong."""

from __future__ import annotations

import io
import struct
import zlib

from PIL import Image


def png(img: Image.Image, **kwargs) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", **kwargs)
    return buf.getvalue()


def chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_header_only(width: int, height: int, bit_depth: int = 8, colour: int = 6) -> bytes:
    """A PNG that claims a size in its header, with a tiny (wrong) body: a bomb's shape."""
    ihdr = struct.pack(">IIBBBBB", width, height, bit_depth, colour, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1024)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def animated_png() -> bytes:
    frames = [Image.new("RGBA", (64, 64), (0, 0, 0, 0)) for _ in range(3)]
    for i, f in enumerate(frames):
        f.paste((0, 0, 0, 255), (10 + 10 * i, 10, 30 + 10 * i, 54))
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:], duration=100)
    return buf.getvalue()


def sixteen_bit_png() -> bytes:
    img = Image.new("I;16", (64, 64), 65535)
    img.paste(0, (20, 10, 40, 54))
    return png(img)


def palette_png() -> bytes:
    img = Image.new("P", (64, 64), 0)
    img.putpalette([255, 255, 255, 0, 0, 0] + [0] * 762)
    img.paste(1, (20, 10, 40, 54))
    return png(img, transparency=0)


def cases(valid: bytes) -> dict[str, tuple[bytes | str, str]]:
    """name -> (image as sent, what must come back: "ok", "error" or "either")."""
    big_png = png(Image.new("L", (20_000, 20_000), 255), compress_level=9)
    return {
        "valid": (valid, "ok"),
        "not_base64": ("%%%not-base64%%%", "error"),
        "text": (b"hello, world", "error"),
        "truncated": (valid[: len(valid) // 2], "error"),
        "corrupt": (valid[:40] + bytes(200) + valid[240:], "error"),
        "zero_size_header": (png_header_only(0, 0), "error"),
        "one_by_one": (png(Image.new("L", (1, 1), 0)), "either"),
        "blank_white": (png(Image.new("L", (280, 280), 255)), "error"),
        "blank_transparent": (png(Image.new("RGBA", (280, 280), (0, 0, 0, 0))), "error"),
        "bomb_header": (png_header_only(100_000, 100_000), "error"),
        "huge_20000": (big_png, "error"),
        "animated": (animated_png(), "either"),
        "sixteen_bit": (sixteen_bit_png(), "either"),
        "palette": (palette_png(), "either"),
        "empty_bytes": (b"", "error"),
    }
