"""Canvas image bytes -> an EMNIST-like 28x28 float32 array (ink = 1, upright).

Two steps, both pure functions:

``decode(data) -> ink``
    Decode with Pillow (header checked first, so a decompression bomb is refused
    before any pixel is decoded) and turn whatever the browser or client sent into
    an *ink map*: float32 HxW in [0, 1], 1 where the pen was. A transparent
    background (``canvas.toDataURL()``) gives ``ink = alpha``; an opaque image
    gives ``ink = distance from the background colour`` (the median of the border),
    so dark-on-white, light-on-dark and coloured ink all work.

``to_emnist(ink) -> (28, 28)``
    Bring the drawing into EMNIST's own form. EMNIST was made by blurring a
    binary scan, cropping to the ink, centring it in a square (aspect ratio
    kept), padding 2 px and downsampling to 28x28 with the intensity stretched
    to the full range. Measured on the training files (see
    ``tests/test_preprocess.py``): the ink's long side spans 24 px (bounding
    box at intensity 0.1), the glyph is centred by its bounding box, and the
    stroke width estimate ``2 * area / perimeter`` is 2.9 px at the median
    (p10 2.2, p90 4.0), about 12% of the glyph's long side.

    Pen drawings on a canvas come in any stroke width relative to the glyph
    (a 7%-of-canvas pen on a small glyph is 25% of its size; a thin pen on a big
    glyph 3%), so the width is measured and brought into the training range
    before the final resize: at an intermediate resolution the ink is blurred
    and re-thresholded at the level that moves every edge by the needed
    distance (for a Gaussian of sigma s a straight edge moves by
    ``-s * Phi^-1(t)`` when thresholded at t), which dilates or erodes by a
    fractional amount with two C calls.

Everything runs in Pillow's C code on uint8 images plus a few numpy reductions
on a 64 px crop; see the report in the tests for the measured cost.
"""

from __future__ import annotations

import io
import math
import struct
import warnings
from statistics import NormalDist

import numpy as np
from PIL import Image, ImageChops, ImageFilter

from inkq.errors import BlankImage, ImageTooLarge, InvalidImage, UnsupportedFormat

#: Pillow format names accepted by :func:`decode` (animated ones: first frame).
ACCEPTED_FORMATS: frozenset[str] = frozenset({"PNG", "JPEG", "WEBP", "GIF", "BMP"})

#: Default limit on width * height (pixels) of an image, checked on the header.
MAX_PIXELS = 4_000_000

#: Version of this preprocessing, recorded in the model card.
PREPROCESS_VERSION = "2"

#: Final image side (px) and the long side of the glyph inside it (px), as measured.
OUT_SIZE = 28
GLYPH_SIZE = 24

#: Side (px) of the intermediate image on which stroke width is normalised.
WORK_SIZE = 64

#: Stroke width range of the training images, ``2 * area / perimeter`` on the
#: 28x28 images (px at 28 px, glyph long side 24 px): p10 and p90, median.
TRAIN_STROKE_P10, TRAIN_STROKE_MEDIAN, TRAIN_STROKE_P90 = 2.16, 2.92, 3.98

#: Stroke widths are pulled into [LOW, HIGH] (px at the 28 px scale).
STROKE_TARGET_LOW = TRAIN_STROKE_MEDIAN
STROKE_TARGET_HIGH = TRAIN_STROKE_MEDIAN

#: An ink-map value below this (fraction of full contrast) is not ink when
#: deciding whether the canvas is blank (JPEG noise, paper texture).
INK_FLOOR = 0.2

#: Blank-canvas rules. A canvas is blank when its ink mass (sum of the ink map)
#: is below MIN_INK_MASS_FRAC of the canvas area (the thinnest pen, 2.5% of the
#: canvas, tracing a 4%-long stroke), or when the ink is a blob rather than a
#: character: its bounding box's long side is under MIN_EXTENT_PER_WIDTH times
#: its stroke width (a dot of diameter D measures 2 by ``2*area/perimeter``;
#: the stubbiest character, a short thick '1', measures above 4).
MIN_INK_MASS_FRAC = 0.001
MIN_EXTENT_PER_WIDTH = 3.0

_GAUSS = NormalDist()
_FLOOR_LUT = [0 if v < INK_FLOOR * 255 else 255 for v in range(256)]
_BBOX_LUT = [0 if v < 26 else 255 for v in range(256)]  # 0.1 of full intensity

_PIL_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    SyntaxError,
    ValueError,
    TypeError,
    struct.error,
    EOFError,
    IndexError,
    KeyError,
    MemoryError,
    Image.DecompressionBombError,
    ZeroDivisionError,
)


# --------------------------------------------------------------------------- decode


def _open(data: bytes, max_pixels: int) -> Image.Image:
    """Open (header only), check format and size, load the first frame."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InvalidImage("image data must be bytes")
    if len(data) == 0:
        raise InvalidImage("empty image")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: we check ourselves
            im = Image.open(io.BytesIO(data), formats=None)
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image too large: {exc}") from exc
    except _PIL_ERRORS as exc:
        raise InvalidImage(f"not a decodable image: {exc}") from exc
    if im.format not in ACCEPTED_FORMATS:
        raise UnsupportedFormat(
            f"image format {im.format} not accepted (accepted: {', '.join(sorted(ACCEPTED_FORMATS))})"
        )
    w, h = im.size
    if w <= 0 or h <= 0:
        raise InvalidImage(f"image has zero size ({w}x{h})")
    if w * h > max_pixels:
        raise ImageTooLarge(f"image is {w}x{h} = {w * h} pixels, limit {max_pixels}")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if getattr(im, "n_frames", 1) > 1:
                im.seek(0)
            im.load()
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"image too large: {exc}") from exc
    except _PIL_ERRORS as exc:
        raise InvalidImage(f"corrupt or truncated image: {exc}") from exc
    return im


def _border(a: np.ndarray) -> np.ndarray:
    """The pixels of the outermost rows and columns, (k, ...)."""
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]], axis=0)


def _ink_from_gray(gray: np.ndarray) -> np.ndarray:
    """Gray float HxW in [0, 1] -> ink = |value - background|."""
    bg = float(np.median(_border(gray)))
    return np.abs(gray - bg).astype(np.float32, copy=False)


def _ink_u8(im: Image.Image) -> Image.Image:
    """An opened image -> its ink map as a Pillow 'L' image (0..255)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        arr = np.asarray(im, dtype=np.float64)
        if mode.startswith("I;16"):
            scale = 65535.0
        elif mode == "I":
            scale = 65535.0 if arr.max(initial=0) > 255 else 255.0
        else:
            scale = 1.0 if arr.max(initial=0) <= 1.0 else 255.0
        gray = np.clip(arr / scale, 0.0, 1.0)
        ink = _ink_from_gray(gray)
        return Image.fromarray(np.round(ink * 255).astype(np.uint8), "L")

    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    if has_alpha:
        rgba = im if mode == "RGBA" else im.convert("RGBA")
        alpha = rgba.getchannel("A")
        lo, hi = alpha.getextrema()
        if lo < 255:
            a = np.asarray(alpha)
            if np.median(_border(a)) == 0:
                # The browser case: transparent background, the ink is what was drawn.
                return alpha
            # Semi-transparent or opaque background with transparent holes:
            # compare premultiplied colours against the border's.
            arr = np.asarray(rgba, dtype=np.float32) / 255.0
            pre = np.concatenate([arr[..., :3] * arr[..., 3:], arr[..., 3:]], axis=2)
            bg = np.median(_border(pre), axis=0)
            ink = np.abs(pre - bg).max(axis=2)
            return Image.fromarray(np.round(ink * 255).astype(np.uint8), "L")
        rgb = rgba.convert("RGB")
    elif mode == "L":
        a = np.asarray(im)
        bg = int(np.median(_border(a)))
        return ImageChops.difference(im, Image.new("L", im.size, bg))
    elif mode == "1":
        return _ink_u8(im.convert("L"))
    else:
        rgb = im if mode == "RGB" else im.convert("RGB")
    # Opaque colour: Chebyshev distance from the border's median colour.
    a = np.asarray(rgb)
    bg = tuple(int(v) for v in np.median(_border(a), axis=0))
    diff = ImageChops.difference(rgb, Image.new("RGB", rgb.size, bg))
    r, g, b = diff.split()
    return ImageChops.lighter(ImageChops.lighter(r, g), b)


def _decode_u8(data: bytes, max_pixels: int) -> Image.Image:
    im = _open(data, max_pixels)
    try:
        return _ink_u8(im)
    except _PIL_ERRORS as exc:
        raise InvalidImage(f"cannot convert image (mode {im.mode}): {exc}") from exc


def decode(data: bytes, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Decode image bytes into an ink map: float32 HxW in [0, 1], 1 = ink.

    Raises :class:`~inkq.errors.InvalidImage` (not an image, corrupt, truncated,
    zero size), :class:`~inkq.errors.UnsupportedFormat` (not in
    :data:`ACCEPTED_FORMATS`) or :class:`~inkq.errors.ImageTooLarge` (width *
    height > ``max_pixels``, checked on the header before decoding).
    """
    ink = _decode_u8(data, max_pixels)
    return np.asarray(ink, dtype=np.float32) / np.float32(255.0)


# --------------------------------------------------------------------------- to_emnist


def _stroke_width(a: np.ndarray) -> float:
    """Stroke width estimate ``2 * area / perimeter`` of an ink map (px)."""
    gy = a[1:, :-1] - a[:-1, :-1]
    gx = a[:-1, 1:] - a[:-1, :-1]
    per = float(np.sqrt(gx * gx + gy * gy).sum())
    area = float(a.sum())
    return 2.0 * area / per if per > 0 else 0.0


def _threshold_lut(t: float, ramp: float) -> list[int]:
    """LUT mapping a blurred ink level v to clip((v - t) / ramp + 0.5, 0, 1)."""
    out = []
    for v in range(256):
        x = (v / 255.0 - t) / ramp + 0.5
        out.append(int(round(255 * min(1.0, max(0.0, x)))))
    return out


def _stretch_lut(peak: int) -> list[int]:
    return [min(255, round(v * 255 / peak)) for v in range(256)]


_SIGMA = 2.0  # px at WORK_SIZE, blur used to move edges
_LUT_CACHE: dict[int, list[int]] = {}


def _edge_shift_lut(shift: float) -> list[int]:
    """LUT that, applied after a Gaussian blur of sigma _SIGMA, moves edges by
    ``shift`` px outwards (negative: inwards). Quantised to 1/8 px and cached."""
    key = int(round(shift * 8))
    lut = _LUT_CACHE.get(key)
    if lut is None:
        t = _GAUSS.cdf(-(key / 8.0) / _SIGMA)
        t = min(0.97, max(0.03, t))
        # Ramp width ~ the slope of the blurred edge at the level: keeps anti-aliasing.
        slope = math.exp(-0.5 * _GAUSS.inv_cdf(t) ** 2) / (_SIGMA * math.sqrt(2 * math.pi))
        lut = _threshold_lut(t, ramp=slope * 1.0)
        _LUT_CACHE[key] = lut
    return lut


def _place(img: Image.Image) -> np.ndarray:
    """Crop to the ink, centre in a square, resize the long side to GLYPH_SIZE,
    pad to OUT_SIZE and stretch the intensity to [0, 1]."""
    bbox = img.point(_BBOX_LUT).getbbox()
    if bbox is None:
        raise BlankImage("no ink left after normalisation")
    img = img.crop(bbox)
    w, h = img.size
    side = max(w, h)
    sq = Image.new("L", (side, side), 0)
    sq.paste(img, ((side - w) // 2, (side - h) // 2))
    small = sq.resize((GLYPH_SIZE, GLYPH_SIZE), Image.BILINEAR, reducing_gap=None)
    out = Image.new("L", (OUT_SIZE, OUT_SIZE), 0)
    pad = (OUT_SIZE - GLYPH_SIZE) // 2
    out.paste(small, (pad, pad))
    arr = np.asarray(out, dtype=np.float32)
    m = arr.max()
    if m <= 0:
        raise BlankImage("no ink left after normalisation")
    return arr * np.float32(1.0 / m)


def _to_emnist_u8(ink: Image.Image) -> np.ndarray:
    W, H = ink.size
    bbox = ink.point(_FLOOR_LUT).getbbox()
    if bbox is None:
        raise BlankImage("the canvas is blank")
    x0, y0, x1, y1 = bbox
    # Include the faint anti-aliased rim around the contrast-floor box.
    x0, y0, x1, y1 = max(0, x0 - 2), max(0, y0 - 2), min(W, x1 + 2), min(H, y1 + 2)
    crop = ink.crop((x0, y0, x1, y1))
    peak = crop.getextrema()[1]
    if peak < 255:  # faint ink (pencil grey, low-contrast colours): full contrast
        crop = crop.point(_stretch_lut(peak))
    cw, ch = crop.size
    long_side = max(cw, ch)
    scale = WORK_SIZE / long_side
    sw, sh = max(1, round(cw * scale)), max(1, round(ch * scale))
    work = crop.resize((sw, sh), Image.BILINEAR, reducing_gap=2.0 if scale < 0.5 else None)

    a = np.asarray(work, dtype=np.float32) * np.float32(1.0 / 255.0)
    mass = float(a.sum()) / (scale * scale)  # in canvas pixels
    if mass < MIN_INK_MASS_FRAC * W * H:
        raise BlankImage("the canvas is near-blank (too little ink)")
    width = _stroke_width(a)  # px at WORK_SIZE
    if width <= 0 or long_side * scale < MIN_EXTENT_PER_WIDTH * width:
        raise BlankImage("the canvas holds a dot or blob, not a character")

    # Stroke width at the 28 px scale once the glyph fills GLYPH_SIZE.
    to28 = GLYPH_SIZE / WORK_SIZE
    w28 = width * to28
    target = min(max(w28, STROKE_TARGET_LOW), STROKE_TARGET_HIGH)
    # Changing the width changes the extent too: glyph extent e (at 28 scale, = 24)
    # grows by the same amount as the width; solve for the shift in work px.
    shift = (target / to28 - width) / 2.0 if abs(target - w28) > 0.05 else 0.0
    if shift != 0.0:
        # Correct for the glyph being rescaled after the change of extent:
        # new width at 28 = (width + 2s) * 24 / (WORK + 2s) == target.
        s = (target * WORK_SIZE / GLYPH_SIZE - width) / (2.0 - 2.0 * target / GLYPH_SIZE)
        margin = int(math.ceil(max(s, 0.0) + 3 * _SIGMA)) + 1
        padded = Image.new("L", (sw + 2 * margin, sh + 2 * margin), 0)
        padded.paste(work, (margin, margin))
        work = padded.filter(ImageFilter.GaussianBlur(_SIGMA)).point(_edge_shift_lut(s))
    return _place(work)


def to_emnist(ink: np.ndarray) -> np.ndarray:
    """An ink map (HxW, [0, 1], 1 = ink) -> an EMNIST-like (28, 28) float32 image.

    Crops to the ink, normalises the stroke width into the training range,
    centres the glyph by its bounding box in a square, resizes its long side to
    24 px, pads to 28x28 and stretches the intensity so the maximum is 1.
    Raises :class:`~inkq.errors.BlankImage` for a blank or near-blank canvas.
    """
    ink = np.asarray(ink)
    if ink.ndim != 2 or ink.size == 0:
        raise BlankImage(f"expected a non-empty 2-D ink map, got shape {ink.shape}")
    if ink.dtype == np.uint8:
        u8 = ink
    else:
        u8 = np.round(np.clip(np.nan_to_num(ink.astype(np.float32)), 0.0, 1.0) * 255).astype(np.uint8)
    return _to_emnist_u8(Image.fromarray(u8, "L"))


def preprocess(data: bytes, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Image bytes -> EMNIST-like (28, 28) float32 in [0, 1]: ``to_emnist(decode(data))``.

    Raises only :class:`~inkq.errors.ItemError` subclasses.
    """
    ink = _decode_u8(data, max_pixels)
    return _to_emnist_u8(ink)
