"""A fast path for the common canvas PNG: zlib-ng inflate, compiled unfilter,
uint8 ink extraction.

:func:`ink_u8_fast` returns exactly what ``preprocess._decode_u8(data, max_pixels)``
returns (an 'L' ink image, 255 = ink), or ``None`` when the image is not one of
the simple cases it handles, in which case the caller uses the Pillow path
(which also raises the right errors). Handled: well-formed, non-interlaced,
8-bit PNGs of colour type grey (0), RGB (2), grey+alpha (4) and RGBA (6), whose
chunks are ``IHDR``, optionally ``sRGB``/``gAMA``/``cHRM``/``pHYs`` (standard
lengths, CRC checked), one or more consecutive ``IDAT`` and ``IEND``.

Everything else gives ``None``: other formats, palette, 16-bit or sub-byte
depths, interlaced, ``tRNS`` or ``acTL`` (APNG) or any other chunk, a bad
signature, a bad CRC on any chunk, truncated files, a zlib stream that is
corrupt, carries a wrong Adler-32, is short, long or followed by junk, an
unknown row filter type, a size over ``max_pixels`` (read from IHDR, before
any decoding), and any decoder error. The structure check is strict on
purpose: whenever this path returns an image, Pillow would have decoded the
same pixels without error.

Why not Pillow: inflating is most of a PNG decode, and zlib-ng inflates about
three times faster than the zlib Pillow is built with (0.04 vs 0.14 ms for a
280x280 canvas). The row filters are then undone by ``worker._fastpng``, a
small C extension (0.05 ms), which also computes the ink (0.01 ms, vectorised).
Where it was not built (no C compiler at install), libspng (pyspng) undoes the
filters, fed the inflated rows in *stored* (uncompressed) deflate blocks, and
numpy computes the ink: the same pixels, about 0.1 ms slower. zlib-ng also
checks the stream's Adler-32, which pyspng's libspng does not.

Ink semantics, mirrored from ``preprocess._ink_u8`` (kept bit-exact, see
``tests/test_fastpng.py``):

* with alpha: if most of the border is fully transparent, ink = alpha; if the
  alpha is fully opaque, treat as the opaque case below; otherwise (semi-
  transparent background) ``None`` - the Pillow path's float premultiplied
  comparison is left to it.
* opaque: background = ``int(np.median(border, axis=0))`` per channel (unless
  something covers the border, a frame: ``preprocess.page_ink``) and ink =
  Chebyshev distance ``max_c |v_c - bg_c|``, computed in uint8 as
  ``max(v, bg) - min(v, bg)`` (exact, no overflow), which equals Pillow's
  ``ImageChops.difference`` + ``lighter``.
"""

from __future__ import annotations

import struct
import zlib

import numpy as np
from PIL import Image

from .preprocess import page_ink

try:  # optional dependencies: without them every call returns None
    import pyspng
    from zlib_ng import zlib_ng
except ImportError:  # pragma: no cover - exercised only without them
    pyspng = zlib_ng = None

try:  # the compiled loops; without them libspng and numpy do the same work
    from . import _fastpng as _compiled
except ImportError:  # pragma: no cover - exercised where no compiler was found
    _compiled = None

__all__ = ["ink_u8_fast"]

_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: Colour types handled (8-bit only) -> (pyspng output format, its channels).
#: libspng cannot output GA8 for an 8-bit grey+alpha PNG ("invalid format"), so
#: that one is decoded to RGBA (R = G = B = grey), as Pillow's path converts it too.
_DECODE = {0: (None, 1), 2: (None, 3), 4: ("RGBA", 4), 6: (None, 4)}
#: Ancillary chunks allowed before IDAT, with their exact standard lengths.
#: Pillow parses them harmlessly (they do not change the mode or the pixels,
#: and libspng does not apply gamma without being asked to).
_BENIGN = {b"sRGB": 1, b"gAMA": 4, b"cHRM": 32, b"pHYs": 9}
_CHUNK = struct.Struct(">I4s")
_IHDR = struct.Struct(">IIBBBBBI")  # width, height, depth, colour type, comp, filter, interlace, CRC
_CRC = struct.Struct(">I")
_MAX_DIM = 2**31 - 1


def _scan(data: bytes, max_pixels: int) -> tuple[int, int, int, list[tuple[int, int]]] | None:
    """(width, height, colour type, IDAT data spans) if the file is a PNG this
    path handles, else None.

    Reads only the signature, IHDR and the chunk headers (8 bytes each) and
    CRCs of the few small chunks before IDAT; IDAT contents are not touched.
    """
    n = len(data)
    if n < 57 or data[:8] != _SIGNATURE:  # signature + IHDR (25) + IDAT (12+) + IEND (12)
        return None
    if data[8:16] != b"\x00\x00\x00\x0dIHDR":
        return None
    w, h, depth, ctype, comp, filt, interlace, crc = _IHDR.unpack_from(data, 16)
    if zlib.crc32(data[12:29]) != crc:
        return None
    if depth != 8 or ctype not in _DECODE or comp or filt or interlace:
        return None
    if not (0 < w <= _MAX_DIM and 0 < h <= _MAX_DIM):
        return None
    pixels = w * h
    if pixels > max_pixels:
        return None  # the Pillow path raises ImageTooLarge
    bomb = Image.MAX_IMAGE_PIXELS
    if bomb is not None and pixels > 2 * bomb:
        return None  # Pillow's own DecompressionBombError -> ImageTooLarge
    pos = 33
    idat: list[tuple[int, int]] = []
    view = memoryview(data)
    while True:
        if pos + 12 > n:
            return None  # truncated (no IEND)
        length, cid = _CHUNK.unpack_from(data, pos)
        end = pos + 12 + length
        if end > n:
            return None
        if cid == b"IDAT":
            idat.append((pos + 8, end - 4))
        elif idat:
            if cid == b"IEND" and length == 0:
                return w, h, ctype, idat
            return None  # anything between IDAT and IEND (or IDATs not consecutive)
        elif _BENIGN.get(cid) != length:
            return None  # tRNS, acTL, PLTE, iCCP, text, unknown... -> Pillow path
        # CRC of every IDAT and pre-IDAT chunk (~1 us for a canvas PNG), as
        # Pillow checks them: a corrupted chunk goes to Pillow to be refused.
        if zlib.crc32(view[pos + 4 : end - 4]) != _CRC.unpack_from(data, end - 4)[0]:
            return None
        pos = end


#: Channels stored per pixel for each colour type handled.
_STORED_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}
_STORED_BLOCK = 65535
_IEND = b"\x00\x00\x00\x00IEND\xaeB`\x82"


def _inflate(data: bytes, idat: list[tuple[int, int]], expected: int) -> bytes | None:
    """The filtered scanlines of the IDAT chunks (zlib-ng), or None unless the
    zlib stream is valid (Adler-32 included), complete, ``expected`` bytes
    long and the last thing in the IDAT chunks."""
    view = memoryview(data)
    z = zlib_ng.decompressobj()
    out: list[bytes] = []
    got = 0
    try:
        for start, end in idat:
            block = z.decompress(view[start:end], expected + 1 - got)
            got += len(block)
            if got > expected or z.unconsumed_tail:
                return None  # more pixels than IHDR says
            out.append(block)
    except zlib_ng.error:
        return None  # corrupt stream or wrong Adler-32
    if got != expected or not z.eof or z.unused_data:
        return None  # short, unfinished, or followed by junk
    return b"".join(out)


def _with_stored_idat(data: bytes, raw: bytes) -> bytes:
    """A PNG with ``data``'s IHDR and ``raw`` in stored deflate blocks."""
    n = len(raw)
    parts = [b"\x78\x01"]
    view = memoryview(raw)
    for i in range(0, n, _STORED_BLOCK):
        k = min(_STORED_BLOCK, n - i)
        parts.append(struct.pack("<BHH", i + k >= n, k, 0xFFFF ^ k))
        parts.append(view[i:i + k])
    parts.append(_CRC.pack(zlib_ng.adler32(raw)))
    stream = b"".join(parts)
    # libspng's chunk CRC checks are off in pyspng, so the new IDAT's CRC is left 0.
    return b"".join((data[:33], _CHUNK.pack(len(stream), b"IDAT"), stream, b"\0\0\0\0", _IEND))


def _border(a: np.ndarray) -> np.ndarray:
    """The pixels of the outermost rows and columns (same order as preprocess)."""
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]], axis=0)


def _median_u8(border: np.ndarray) -> list[int]:
    """``[int(v) for v in np.median(border, axis=0)]`` for a uint8 border, ~30% cheaper.

    The border always has an even number of pixels (2w + 2(h - 2), or 2w when
    h == 1), so np.median is the float mean of the two middle values and int()
    truncates it: (lo + hi) // 2 exactly. The odd case is kept for safety."""
    n = len(border)
    k = n // 2
    if n % 2:
        mid = np.partition(border, k, axis=0)[k]
        return np.atleast_1d(mid).tolist()
    p = np.partition(border, (k - 1, k), axis=0)
    lo, hi = np.atleast_1d(p[k - 1]).tolist(), np.atleast_1d(p[k]).tolist()
    return [(a + b) // 2 for a, b in zip(lo, hi)]


def _ink_gray(g: np.ndarray) -> Image.Image:
    """Grey HxW uint8 -> |g - page colour| as an 'L' image (the border's median,
    unless something covers it: :func:`worker.preprocess.page_ink`)."""

    def distance(bg: object) -> np.ndarray:
        b = np.uint8(bg)
        d = np.maximum(g, b)
        d -= np.minimum(g, b)
        return d

    return Image.fromarray(page_ink(g, _median_u8(_border(g))[0], distance))


def _ink_colour(arr: np.ndarray, nc: int) -> Image.Image:
    """HxWxnc uint8 (nc = 3, or 4 with an opaque alpha) -> Chebyshev distance of
    RGB from the page's colour (as :func:`_ink_gray`), as an 'L' image."""
    rgb = arr[..., :3]
    return Image.fromarray(page_ink(rgb, _median_u8(_border(rgb)),
                                    lambda bg: _chebyshev(arr, nc, [int(v) for v in bg])))


def _chebyshev(arr: np.ndarray, nc: int, bg: list[int]) -> np.ndarray:
    """Chebyshev distance of the RGB of HxWxnc uint8 pixels from ``bg``, HxW uint8."""
    h, w = arr.shape[:2]
    if _compiled is not None:
        return np.frombuffer(_compiled.chebyshev(arr, nc, bytes(bg)), np.uint8).reshape(h, w)
    if nc == 4:
        bg.append(255)  # alpha is all 255 here: its difference is 0
    # Broadcast the background along whole rows (w * nc bytes, contiguous):
    # a length-nc inner axis would make numpy crawl.
    flat = arr.reshape(h, w * nc)
    row = np.tile(np.array(bg, np.uint8), w)
    d = np.maximum(flat, row)
    d -= np.minimum(flat, row)
    # Max over R, G, B with contiguous (SIMD) passes over the flat bytes:
    # m[i] = max(d[i], d[i+1], d[i+2]), so m[nc*p] is pixel p's Chebyshev distance.
    flat_d = d.reshape(-1)
    m = np.maximum(flat_d[:-1], flat_d[1:])
    np.maximum(m[:-1], flat_d[2:], out=m[:-1])
    return np.ascontiguousarray(m[0::nc].reshape(h, w))  # strided -> one contiguous copy


def _alpha(arr: np.ndarray) -> Image.Image:
    """The last channel of HxWxnc uint8 pixels as an 'L' image."""
    h, w, nc = arr.shape
    if _compiled is not None:
        return Image.frombytes("L", (w, h), _compiled.channel(arr, nc, nc - 1))
    return Image.fromarray(np.ascontiguousarray(arr[..., nc - 1]))


def _pixels(data: bytes, raw: bytes, w: int, h: int, ctype: int) -> np.ndarray | None:
    """HxWxC uint8 pixels from the inflated scanlines, or None on any decoder
    error. C is the stored channel count, except that libspng gives grey+alpha
    as RGBA (it cannot output two channels for 8-bit grey+alpha)."""
    stored = _STORED_CHANNELS[ctype]
    if _compiled is not None:
        try:
            px = _compiled.unfilter(raw, w, h, stored)
        except ValueError:  # an unknown filter type: Pillow refuses it too
            return None
        return np.frombuffer(px, np.uint8).reshape(h, w, stored)
    fmt, nc = _DECODE[ctype]
    try:
        arr = pyspng.load(_with_stored_idat(data, raw), fmt)
    except Exception:  # noqa: BLE001 - any libspng failure: let Pillow report it
        return None
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.dtype != np.uint8 or arr.shape != (h, w, nc):
        return None  # pragma: no cover - libspng returned something unexpected
    return arr


def ink_u8_fast(data: bytes, max_pixels: int) -> Image.Image | None:
    """``preprocess._decode_u8(data, max_pixels)`` for the common PNGs, else None.

    Never raises for any input: ``None`` means "use the Pillow path".
    """
    if zlib_ng is None or (_compiled is None and pyspng is None) or type(data) is not bytes:
        return None
    try:
        hdr = _scan(data, max_pixels)
    except (struct.error, TypeError, ValueError):  # pragma: no cover - defensive
        return None
    if hdr is None:
        return None
    w, h, ctype, idat = hdr
    raw = _inflate(data, idat, h * (1 + w * _STORED_CHANNELS[ctype]))
    if raw is None:
        return None
    arr = _pixels(data, raw, w, h, ctype)
    if arr is None:
        return None
    if ctype == 0:
        return _ink_gray(arr[..., 0])
    if ctype == 2:
        return _ink_colour(arr, 3)
    alpha = arr[..., -1]
    border = _border(alpha)
    if 2 * np.count_nonzero(border) < border.size:
        # The browser case: most of the border is fully transparent.
        return _alpha(arr)
    if alpha.min() < 255:
        return None  # semi-transparent background: Pillow path's float logic
    if ctype == 4:
        # Grey+alpha, opaque: Pillow converts to RGBA (R = G = B = grey), whose
        # Chebyshev distance from the border's median colour is |grey - median|.
        return _ink_gray(arr[..., 0])
    return _ink_colour(arr, 4)
