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
    (p10 2.2, p90 4.0), about 12% of the glyph's long side. The widths vary by
    class: small lowercase shapes ('o' within 'O', 'e', 'n', 'r') are thicker
    and slightly smaller (extent 22 px), because EMNIST blurred and cropped
    the scan at its own size.

    A stray mark apart from the glyph (a tap of the pen, a speck in a scan)
    would otherwise shrink the glyph into a corner of its crop, so small pieces
    of ink far from the rest are left out of the crop (see STRAY_MASS), while
    the dots of strokes stamped as rows of dots are kept and joined (see
    DOT_PIECES); and a page photographed under uneven light has its shade
    taken away first (see SHADE_LEVEL), ruled or squared paper its printed
    lines (see LINE_SPAN), and a form its printed boxes (see BOX_SIDE).

    Pen drawings on a canvas come in any stroke width relative to the glyph
    (a 7%-of-canvas pen on a small glyph is 25% of its size; a thin pen on a big
    glyph 3%), so the width is measured and, when outside the training range
    (p10..p90), brought to its nearer bound before the final resize: at an
    intermediate resolution the ink is blurred and re-thresholded at the level
    that moves every edge by the needed distance (for a Gaussian of sigma s a
    straight edge moves by ``-s * Phi^-1(t)`` when thresholded at t), which
    dilates or erodes by a fractional amount with two C calls.

Everything runs in Pillow's C code on uint8 images plus a few numpy reductions
on a 48 px crop (about 0.1 ms for a 280x280 canvas beyond Pillow's decode).
"""

from __future__ import annotations

import io
import itertools
import math
import re
import struct
import warnings
from collections.abc import Callable, Iterator
from statistics import NormalDist
from typing import Any

import numpy as np
from PIL import Image, ImageChops, ImageDraw, ImageFilter, ImageOps

from inkq.errors import BlankImage, ImageTooLarge, InvalidImage, UnsupportedFormat

try:
    from . import _euler
except ImportError:  # pragma: no cover - exercised where no compiler was found
    _euler = None

#: Pillow format names accepted by :func:`decode` (animated ones: first frame).
ACCEPTED_FORMATS: frozenset[str] = frozenset({"PNG", "JPEG", "WEBP", "GIF", "BMP"})

#: Default limit on width * height (pixels) of an image, checked on the header.
MAX_PIXELS = 4_000_000

#: Most scans a JPEG may have. A progressive JPEG's decoder passes over the whole
#: image once a scan, and a scan can be a dozen bytes: 2 MB of them took 27 s to
#: decode at 2000x2000. Encoders write 1-3 scans, or about 10 progressive ones.
MAX_JPEG_SCANS = 256

#: Version of this preprocessing, recorded in the model card.
PREPROCESS_VERSION = "18"

#: Final image side (px); the glyph's long side inside it measures 24 px (0.1 level).
OUT_SIZE = 28

#: Side (px) of the intermediate image on which stroke width is normalised.
WORK_SIZE = 48

#: Stroke width range of the training images, ``2 * area / perimeter`` on the
#: 28x28 images (px at 28 px, glyph long side 24 px): p10 and p90, median.
TRAIN_STROKE_P10, TRAIN_STROKE_MEDIAN, TRAIN_STROKE_P90 = 2.16, 2.92, 3.98

#: An ink-map value below this (fraction of full contrast) is not ink when
#: deciding whether the canvas is blank (JPEG noise, paper texture).
INK_FLOOR = 0.2
#: The floor for a drawing fainter than INK_FLOOR all over, on a spotless page
#: (no pixel along the edge of the reduced ink map differs from the background
#: by more than 2 levels: a canvas, a drawing program's export): light grey on
#: white, a brush at low opacity. Under INK_FLOOR such a drawing at 15%
#: contrast would be refused as blank.
FAINT_INK_FLOOR = 0.06

#: Blank-canvas rules. A canvas is blank when its ink mass (sum of the ink map)
#: is below MIN_INK_MASS_FRAC of the canvas area (the thinnest pen, 2.5% of the
#: canvas, tracing a 4%-long stroke), or when the ink is a blob rather than a
#: character: its bounding box's long side is under MIN_EXTENT_PER_WIDTH times
#: its stroke width. A disc measures 2 by ``2*area/perimeter``, but through the
#: crop and resampling a small one (a tap, 10-14 px on a 280 px canvas)
#: measures up to 2.35, so a mark under TAP_SIZE of the canvas side needs 2.5;
#: a bigger mark only needs BLOB_EXTENT_PER_WIDTH (discs of 16 px and more
#: measure 1.95-2.16): a small 'e' or 'G' drawn with a marker a tenth of the
#: canvas wide fills in to 2.1-2.5 and is a character all the same.
MIN_INK_MASS_FRAC = 0.001
MIN_EXTENT_PER_WIDTH = 2.5
BLOB_EXTENT_PER_WIDTH = 2.2
TAP_SIZE = 0.1

_GAUSS = NormalDist()
_FLOOR_U8 = int(math.ceil(INK_FLOOR * 255))
_FAINT_FLOOR_U8 = int(math.ceil(FAINT_INK_FLOOR * 255))

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
        raise InvalidImage("The image data must be bytes.")
    if len(data) == 0:
        raise InvalidImage("The image is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DecompressionBombWarning: we check ourselves
            im = Image.open(io.BytesIO(data), formats=None)
    except Image.DecompressionBombError as exc:
        raise _bomb(exc, max_pixels) from exc
    except _PIL_ERRORS as exc:
        raise InvalidImage("The bytes are not an image in an accepted format.") from exc
    if im.format not in ACCEPTED_FORMATS:
        raise UnsupportedFormat(
            f"Image format {im.format} is not accepted (accepted: {', '.join(sorted(ACCEPTED_FORMATS))})."
        )
    w, h = im.size
    if w <= 0 or h <= 0:
        raise InvalidImage(f"The image has zero size ({w}x{h}).")
    if w * h > max_pixels:
        raise ImageTooLarge(f"The image is {w}x{h} = {w * h} pixels; the limit is {max_pixels}.")
    # Start-of-scan markers; entropy-coded data cannot hold one (0xFF is stuffed).
    if im.format == "JPEG" and bytes(data).count(b"\xff\xda") > MAX_JPEG_SCANS:
        raise InvalidImage(f"The JPEG has more than {MAX_JPEG_SCANS} scans; encoders write about 10.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            im.load()  # the first frame: counting frames would read every one
    except Image.DecompressionBombError as exc:
        raise _bomb(exc, max_pixels) from exc
    except _PIL_ERRORS as exc:
        raise InvalidImage(f"The image is corrupt or truncated ({exc}).") from exc
    return _upright(im)


def _bomb(exc: Exception, max_pixels: int) -> ImageTooLarge:
    """Pillow refuses a header past its own, far higher limit before ours is
    checked; say it with ours (and the size, from its message, where it is there)."""
    found = re.search(r"\((\d+) pixels\)", str(exc))
    size = f"{int(found.group(1))} pixels" if found else "more pixels than Pillow opens"
    return ImageTooLarge(f"The image is {size}; the limit is {max_pixels}.")


#: EXIF orientation tag: how a camera or phone says to turn the stored pixels.
_ORIENTATION = 0x0112


def _upright(im: Image.Image) -> Image.Image:
    """The image turned the way its EXIF orientation says, as viewers show it.

    A phone stores a photo as the sensor read it and records how it was held;
    a sideways character is another character (or none). EXIF that cannot be
    read is ignored: the pixels are still the image.
    """
    try:
        if im.getexif().get(_ORIENTATION, 1) in (1, None):
            return im
        return ImageOps.exif_transpose(im)
    except _PIL_ERRORS:
        return im


def _border(a: np.ndarray) -> np.ndarray:
    """The pixels of the outermost rows and columns, (k, ...)."""
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]], axis=0)


#: The page's colour is the median of the canvas's border, unless more than
#: PAGE_SHARE of the canvas reads as ink against it (INK_FLOOR): then something
#: covers the border (a frame drawn along it, the desk around a photographed
#: sheet), the page is the median colour of the whole canvas and the ink along
#: the edge is cleared. Both are read on a grid of about _PAGE_GRID x _PAGE_GRID
#: pixels. A drawing covers far less than half its canvas.
PAGE_SHARE = 0.5
_PAGE_GRID = 24


def _grid(a: np.ndarray) -> np.ndarray:
    """A grid of about _PAGE_GRID x _PAGE_GRID samples of HxW(xC) pixels."""
    h, w = a.shape[:2]
    sy, sx = max(1, h // _PAGE_GRID), max(1, w // _PAGE_GRID)
    return a[sy // 2::sy, sx // 2::sx]


def page_ink(a: np.ndarray, border_bg: Any, distance: Callable[[Any], np.ndarray]) -> np.ndarray:
    """The uint8 ink map of HxW(xC) pixels ``a`` whose border's median colour
    is ``border_bg``: ``distance(page colour)``, where ``distance`` gives the
    ink map against a colour (see :data:`PAGE_SHARE`)."""
    ink = distance(border_bg)
    g = _grid(ink)
    if np.count_nonzero(g >= _FLOOR_U8) <= PAGE_SHARE * g.size:
        return ink
    ink = distance(np.median(_grid(a).reshape(-1, *a.shape[2:]), axis=0))
    # Printed lines along the edge (squared paper cut through its lines) also
    # take the border's median, and the character crosses them: they go first.
    return without_frame(np.asarray(_without_lines(_image(ink))))


def without_frame(ink: np.ndarray) -> np.ndarray:
    """The uint8 ink map with the ink that touches the canvas's edge cleared,
    and 2 px around it (its anti-aliased fringe): the frame or the desk that
    covered the border. A character drawn touching it goes with it."""
    from scipy import ndimage

    labels, n = ndimage.label(ink >= _FLOOR_U8, structure=_EIGHT)
    on_edge = np.zeros(n + 1, dtype=bool)  # by label: a look-up, where np.unique hashed
    on_edge[_border(labels)] = True        # millions of pieces along a long thin canvas
    on_edge[0] = False
    ink = np.array(ink)
    if on_edge.any():
        ink[ndimage.binary_dilation(on_edge[labels], structure=_EIGHT, iterations=2)] = 0
    return ink


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
        return _image(page_ink(gray, float(np.median(_border(gray))),
                               lambda bg: _u8(np.abs(gray - float(bg)))))

    has_alpha = mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in im.info
    if has_alpha:
        rgba = im if mode == "RGBA" else im.convert("RGBA")
        alpha = rgba.getchannel("A")
        a = np.asarray(alpha)
        border = _border(a)
        if 2 * np.count_nonzero(border) < border.size:
            # The browser case: most of the border is fully transparent.
            return alpha
        if a.min() < 255:
            # Semi-transparent or opaque background with transparent holes:
            # compare premultiplied colours against the page's.
            arr = np.asarray(rgba, dtype=np.float32) / 255.0
            pre = np.concatenate([arr[..., :3] * arr[..., 3:], arr[..., 3:]], axis=2)
            return _image(page_ink(pre, np.median(_border(pre), axis=0),
                                   lambda bg: _u8(np.abs(pre - bg).max(axis=2))))
        rgb = rgba.convert("RGB")
    elif mode == "L":
        a = np.asarray(im)

        def difference(bg: Any) -> np.ndarray:
            return np.asarray(ImageChops.difference(im, Image.new("L", im.size, int(bg))))

        return _image(page_ink(a, int(np.median(_border(a))), difference))
    elif mode == "1":
        return _ink_u8(im.convert("L"))
    else:
        rgb = im if mode == "RGB" else im.convert("RGB")
    # Opaque colour: Chebyshev distance from the page's colour.
    a = np.asarray(rgb)

    def chebyshev(bg: Any) -> np.ndarray:
        r, g, b = ImageChops.difference(rgb, Image.new("RGB", rgb.size, tuple(int(v) for v in bg))).split()
        return np.asarray(ImageChops.lighter(ImageChops.lighter(r, g), b))

    return _image(page_ink(a, [int(v) for v in np.median(_border(a), axis=0)], chebyshev))


def _u8(ink: np.ndarray) -> np.ndarray:
    """A float ink map in [0, 1] as uint8."""
    return np.round(ink.astype(np.float32) * 255).astype(np.uint8)


def _image(ink: np.ndarray) -> Image.Image:
    """A uint8 ink map as an 'L' image."""
    return Image.fromarray(ink, "L")


def _decode_u8(data: bytes, max_pixels: int) -> Image.Image:
    im = _open(data, max_pixels)
    try:
        return _ink_u8(im)
    except _PIL_ERRORS as exc:
        raise InvalidImage(f"The image (mode {im.mode}) cannot be converted ({exc}).") from exc


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


def _stroke_width(a: np.ndarray, area: float | None = None) -> float:
    """Stroke width estimate ``2 * area / perimeter`` of an ink map (px).

    The perimeter is the summed gradient magnitude, taken as the L1 norm times
    pi/4 (its mean ratio to the L2 norm over all edge directions). Ink that
    reaches the map's edge has an edge there too: a bar on a big canvas,
    cropped and scaled, can fill its map's width."""
    framed = np.zeros((a.shape[0] + 2, a.shape[1] + 2), np.float32)  # np.pad takes 10 times as long
    framed[1:-1, 1:-1] = a
    per = (np.abs(framed[1:] - framed[:-1]).sum() + np.abs(framed[:, 1:] - framed[:, :-1]).sum()) * (math.pi / 4)
    if area is None:
        area = a.sum()
    return float(2.0 * area / per) if per > 0 else 0.0


_SIGMA = 1.5  # px at WORK_SIZE: the Gaussian used to move edges
_LUT_CACHE: dict[int, np.ndarray] = {}


def _edge_shift_lut(shift: float) -> np.ndarray:
    """LUT that, after a Gaussian blur of sigma ``_SIGMA``, moves every edge by
    ``shift`` px outwards (negative: inwards), keeping a 1 px anti-aliased ramp.

    A straight edge blurred by a Gaussian has the profile Phi(x / sigma); its
    level t lies at x = sigma * Phi^-1(t) from the edge, so thresholding at
    t = Phi(-shift / sigma) moves the edge by ``shift``. Quantised to 1/8 px, cached.
    """
    key = int(round(shift * 8))
    lut = _LUT_CACHE.get(key)
    if lut is None:
        t = min(0.97, max(0.03, _GAUSS.cdf(-(key / 8.0) / _SIGMA)))
        slope = math.exp(-0.5 * _GAUSS.inv_cdf(t) ** 2) / (_SIGMA * math.sqrt(2 * math.pi))
        v = np.arange(256) / 255.0
        lut = np.round(255 * np.clip((v - t) / slope + 0.5, 0.0, 1.0)).astype(np.uint8)
        _LUT_CACHE[key] = lut
    return lut


#: Stroke widths (px at the 28 px scale, this module's estimator) are kept when
#: they lie within [LOW, HIGH], the p10..p90 range of the training images, and
#: pulled to the nearer bound when they do not. Measured with the first model
#: on 2,000 rendered test images (accuracy change vs raw, canvas / pen):
#: everything to the median 2.75: -2.7 / -5.0 points; [2.4, 3.3]: -2.0 / -4.8;
#: [2.1, 3.9]: -1.2 / -4.6; [2.0, 4.4]: -1.2 / -5.0; no normalisation: -1.0 / -5.6.
#: Relative stroke width carries real information in EMNIST (small, rounder
#: lowercase shapes such as 'o', 'e', 'n', 'r' are thicker), so it is only
#: brought into the range the model has seen, not erased.
STROKE_TARGET_LOW, STROKE_TARGET_HIGH = 2.1, 3.9
#: Long side of the glyph's 0.1-level bounding box at the 28 px scale before
#: the final resampling (calibrated so the output extent is 24 px, as measured).
GLYPH_BOX = 23.6
#: Margin (canvas px) kept around the contrast-floor bounding box when cropping.
_CROP_MARGIN = 6
#: Integer reduction for the cheap first look at the whole canvas.
_REDUCE = 4


#: Stray marks. A piece of ink apart from the rest (a tap of the pen, a
#: speck of dust in a scan) would shrink the glyph into a corner of its crop,
#: so a piece with less than STRAY_MASS of the ink of the pieces kept joins
#: them only when it is near: a stroke (long side over twice its short side:
#: the tail of a 'Q', the bar of a 'G' drawn apart) within STRAY_REACH times
#: their long side L; a dot within STRAY_DOT_REACH * L, or, above a glyph at
#: most STRAY_DOT_NARROW as wide as tall and within STRAY_DOT_REACH * L of its
#: columns, within STRAY_DOT_LINE * L: where an 'i' or a 'j' has its dot (in
#: the training files such dots lie within 0.49 L at p90 and 0.76 L at p99
#: of the stem, and 2 of 124 lie below it). A tap above a round or wide glyph
#: is a stray mark, and a dotless 'i' or 'j' still reads as one of its class
#: (measured on pen drawings of the validation images: the dot rule above and
#: below any glyph no wider than tall cost 5.8 points of accuracy with a stray
#: dot, this one 1.5, with no answer for an 'i' or 'j' changed). Bigger
#: pieces (the arms of an 'E' drawn apart) always join.
STRAY_MASS = 0.25
STRAY_REACH = 0.25
STRAY_DOT_REACH = 0.1
STRAY_DOT_LINE = 0.8
STRAY_DOT_NARROW = 0.7


#: Uneven light. The ink map measures each pixel against the border's colour,
#: so paper photographed or scanned under uneven light (a shadow, a vignette,
#: a gradient) leaves a faint shade over part of the page. When at least
#: SHADE_AREA of the page reads as faint ink (from SHADE_LEVEL to SHADE_FAINT
#: of the strongest ink: pen strokes are stronger, and only their edges are
#: that faint), the page's own shade is estimated (a median over a fifth of
#: the page, strokes left out) and taken away.
SHADE_LEVEL, SHADE_FAINT, SHADE_AREA = 0.04, 0.35, 0.25
_SHADE_U8 = int(math.ceil(SHADE_LEVEL * 255))


def _shaded(small: np.ndarray) -> bool:
    """Whether a reduced ink map carries a shade over SHADE_AREA of the page."""
    faint = max(_SHADE_U8 + 1, int(SHADE_FAINT * int(small.max())))
    band = (small >= _SHADE_U8) & (small < faint)
    return int(np.count_nonzero(band)) >= SHADE_AREA * small.size


def _without_shade(ink: Image.Image) -> Image.Image:
    """The ink map less its slowly varying shade, clipped at 0.

    The shade is a median over 7x7 pixels of the ink map reduced to about
    32 px, taken over the page alone: pixels with SHADE_FAINT of the strongest
    ink or more are strokes and left out, so even a thick marker's strokes,
    which can fill most of such a window, are not taken for shade.
    """
    # At most 256 px long: a 7x7 median over a page 2 px tall and 2,000,000 long
    # at full size took 4.5 GB and 26 s.
    k = max(1, min(ink.size) // 32, -(-max(ink.size) // 256))
    small = np.asarray(ink.reduce(k) if k > 1 else ink, dtype=np.float32)
    page = np.where(small >= SHADE_FAINT * small.max(), np.nan, small)
    windows = np.lib.stride_tricks.sliding_window_view(np.pad(page, 3, mode="edge"), (7, 7))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a window of strokes only
        shade = np.nanmedian(windows, axis=(2, 3))
        everywhere = np.nanmedian(page)
    shade = np.where(np.isnan(shade), 0.0 if np.isnan(everywhere) else everywhere, shade)
    shade_im = Image.fromarray(np.round(shade).astype(np.uint8), "L").resize(ink.size, Image.BILINEAR)
    return ImageChops.subtract(ink, shade_im)


#: Page lines. Ruled or squared paper, and the guide lines some drawing apps
#: export, cross the whole page in rows or columns of faint ink; inside the
#: crop they would be strokes of the character. When a row or a column of the
#: reduced canvas is at SHADE_LEVEL or more from edge to edge, every full-size
#: row (column) with LINE_SPAN of its pixels so, LINE_SHARE of them fainter
#: than LINE_FAINT of the strongest ink (printed lines are lighter than the
#: pen), has the median of those divided out (see :func:`_beneath`): the line
#: goes, and a stroke crossing or running along it keeps its ink. A pen's stroke
#: across the whole page is as strong as the pen and stays.
LINE_SPAN, LINE_SHARE, LINE_FAINT = 0.95, 0.25, 0.6


def _beneath(v: np.ndarray, level: Any) -> np.ndarray:
    """Ink (0..255) with a printed line of strength ``level`` under it divided
    out: ink over ink darkens it, 1 - v = (1 - line) * (1 - pen's ink)."""
    return (v - level) * (255.0 / (255.0 - level))


def _lined(small: np.ndarray) -> bool:
    """Whether a reduced ink map has a row or a column of ink from edge to edge."""
    return int(small.min(axis=1).max()) >= _SHADE_U8 or int(small.min(axis=0).max()) >= _SHADE_U8


def _without_lines(ink: Image.Image) -> Image.Image:
    """The ink map less its page lines (see LINE_SPAN)."""
    a = np.asarray(ink).astype(np.float32)
    faint = LINE_FAINT * float(a.max())
    levels = []
    for axis in (1, 0):  # rows, then columns: both found before either goes (a 2 px
        #                  line taken out of every column it crosses would part it)
        spans = np.count_nonzero(a >= _SHADE_U8, axis=axis) >= LINE_SPAN * a.shape[axis]
        if not spans.any():
            continue
        lines = a[spans] if axis == 1 else a[:, spans]
        printed = (lines >= _SHADE_U8) & (lines < faint)  # not the pen's
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a line all pen
            level = np.nan_to_num(np.nanmedian(np.where(printed, lines, np.nan), axis=axis))
        level[np.count_nonzero(printed, axis=axis) < LINE_SHARE * a.shape[axis]] = 0.0
        full = np.zeros(len(spans), dtype=np.float32)
        full[spans] = level
        levels.append(full[:, None] if axis == 1 else full[None, :])
    for level in levels:
        a = _beneath(a, level)
    return Image.fromarray(np.round(np.clip(a, 0, 255)).astype(np.uint8), "L")


#: Lines not quite level: a photographed page turned by up to LINE_TILT
#: degrees. Its lines are looked for on the reduced canvas, max-pooled to
#: at most _TILT_GRID px and sheared by each slope in steps of one pixel
#: across it: a line then lies along a row (two, where it is split between
#: them). The lines' strength is the 90th percentile over the columns of the
#: strongest faint ink near them at full size, and the ink up to it is taken
#: away everywhere: along a tilted line the ink is split between two rows,
#: too faint in each to be taken away row by row.
LINE_TILT = 6.0
_TILT_GRID = 96


def _shear(w: int, t: float) -> np.ndarray:
    """The rows each of ``w`` columns moves up by to bring a line of slope ``t`` level."""
    off = np.round(np.arange(w) * t).astype(np.intp)
    return off - off.min()


def _tilted_lines(small: np.ndarray) -> tuple[int, float, np.ndarray, int] | None:
    """``(axis, slope, rows, f)`` of tilted page lines in a reduced ink map
    (axis 1: rows, 0: columns), found on it max-pooled ``f`` times with each
    column moved up by ``_shear(width, slope)``: then the lines lie along
    ``rows`` and the row below each. None if there are none."""
    for axis, m in ((1, small), (0, small.T)):
        if m[:, 0].max() < _SHADE_U8 or m[:, -1].max() < _SHADE_U8:
            continue  # a page line reaches both edges
        f = -(-max(m.shape) // _TILT_GRID)
        c = np.asarray(_max_pool(_image(np.ascontiguousarray(m)), f) if f > 1 else m).astype(np.int16)
        h, w = c.shape
        steps = int(math.tan(math.radians(LINE_TILT)) * w)
        pairs = np.zeros((h - 1 + steps + 1, w), np.int16)  # each row plus the one below, zeros past the end
        pairs[:h - 1] = c[:-1] + c[1:]
        cols = np.arange(w)[None, :]
        best: tuple[int, float, np.ndarray, int] | None = None
        for k in range(-steps, steps + 1):
            sheared = pairs[np.arange(h - 1)[:, None] + _shear(w, k / w)[None, :], cols]
            rows = np.flatnonzero(np.count_nonzero(sheared >= _SHADE_U8, axis=1) >= LINE_SPAN * w)
            if rows.size and (best is None or rows.size > best[2].size):
                best = (axis, k / w, rows, f)
        if best is not None:
            return best
    return None


def _without_tilted_lines(ink: Image.Image, k: int, axis: int, t: float, rows: np.ndarray, f: int) -> Image.Image:
    """The ink map (reduced ``k`` times for :func:`_tilted_lines`) less the
    ink up to its tilted page lines' strength."""
    a = np.asarray(ink)
    m = a if axis == 1 else a.T
    h, w = m.shape
    step = k * f  # full-size pixels in a pooled one
    pooled_w = -(-w // step)
    rows = rows[np.diff(rows, prepend=-2) > 1]  # a line found in two pairs of rows: once
    x = np.arange(0, w, -(-w // 256))  # enough columns for a percentile
    top = (rows[:, None] + _shear(pooled_w, t)[np.minimum(x // step, pooled_w - 1)][None, :]) * step
    y = top[:, None, :] + np.arange(-step, 3 * step)[None, :, None]  # (line, near, column)
    p = np.where((y >= 0) & (y < h), m[np.clip(y, 0, h - 1), x], 0).max(axis=1).ravel()
    p = p[(p >= _SHADE_U8) & (p < LINE_FAINT * float(a.max()))]
    if p.size < LINE_SHARE * len(rows) * len(x):
        return ink
    level = float(np.percentile(p, 90))
    lut = _beneath(np.arange(256, dtype=np.float32), level)
    return ink.point(np.round(np.clip(lut, 0, 255)).astype(np.uint8).tolist())


#: Printed boxes. A form asks for one character in each of a row of boxes,
#: and cut out, the box comes with the character, often as dark as the pen;
#: the glyph box would take it in. A box is looked for on the reduced canvas:
#: rows and columns at least BOX_COVER as full as the fullest, at least
#: BOX_SIDE long and apart (the outermost rows; pairs of columns, the widest
#: first, since in a row of boxes apart from each other the lines break
#: between them), each inked over BOX_COVER of the span between the other
#: two, with ink inside more than a line's width from them. At full size
#: each side must be rows (columns) inked over BOX_COVER of the box that meet
#: the others at square corners, with at most half of the box inked along
#: either side of them. Then they are cleared as far as they run on, with the
#: lines of the next boxes in the row and those between cells as thin as the
#: sides, except where a stroke crosses one. Left as drawn: a rectangle with
#: nothing inside (an 'O', a '0'), with a bar across it (an '8', a 'B'), with
#: rounded corners (a 'Q'), the middle of a fat stroke (rows beside it are
#: full too), and a line from side to side with no other ink beside it (a '1'
#: drawn with a ruler). A box turned up to BOX_TILT degrees (a page scanned or
#: cut crooked) is found at its slope (see :func:`_box_tilt`) and the page
#: turned level with it in whole pixels (:func:`_level`), after which a corner
#: may be a pixel out. A cleared line's fringe, a pixel beside it where the
#: ink ends beyond it, goes with it: a scan's line, or one turned level,
#: wavers by a pixel.
BOX_SIDE, BOX_COVER = 8, 0.9
BOX_TILT = 4.0
_BOX_CORNER = 2
_BOX_MAX_COLUMNS = 8  # groups of full columns paired up; past that, the outermost

_Band = tuple[int, int]  # first and last reduced row (column) of a box's side
_Box = tuple[tuple[_Band, _Band], tuple[_Band, _Band]]  # (top, bottom), (left, right)


def _consecutive(idx: np.ndarray) -> list[np.ndarray]:
    """Ascending indices in runs of consecutive ones: [1 2 3 7 8] -> [1 2 3], [7 8]."""
    return np.split(idx, np.flatnonzero(np.diff(idx) > 1) + 1) if idx.size else []


def _bands(on: np.ndarray, lo: int, hi: int, a: int, b: int) -> tuple[_Band, _Band] | None:
    """The bands of rows from ``lo`` down and from ``hi`` up inked over
    BOX_COVER of columns ``a..b``, or None if row ``lo`` or ``hi`` is not."""
    a, b = a + _BOX_CORNER, b - _BOX_CORNER
    full = np.count_nonzero(on[lo:hi + 1, a:b + 1], axis=1) >= BOX_COVER * (b - a + 1)
    if not (full[0] and full[-1]):
        return None
    first_gap, last_gap = full.argmin(), len(full) - 1 - full[::-1].argmin()
    if full.all():
        return None  # a filled rectangle
    return (lo, lo + first_gap - 1), (lo + last_gap + 1, hi)


def _bar(cover: np.ndarray, thickness: int) -> bool:
    """Whether rows inside a box, inked over ``cover`` of its width, hold a
    straight bar across it: rows inked over BOX_COVER, together at most
    ``thickness`` + 1 thick, between rows inked over at most half of it
    (a stroke that crosses the box on a curve is inked over more)."""
    full = np.flatnonzero(cover >= BOX_COVER)
    for run in _consecutive(full):
        above, below = run[0] - 1, run[-1] + 1
        if (len(run) <= thickness + 1 and (above < 0 or cover[above] <= 0.5)
                and (below >= len(cover) or cover[below] <= 0.5)):
            return True
    return False


def _boxes(on: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> Iterator[_Box]:
    """``((top, bottom), (left, right))``: the bands of the rows and columns
    of ``on``, a reduced ink map inked at half the floor (``rows`` and
    ``cols`` its counts), along which a printed box may run (see BOX_SIDE),
    the likeliest first; none for most drawings."""
    found = []
    for counts in (rows, cols):  # the cheap look: most drawings stop here
        longest = int(counts.max())
        lines = np.flatnonzero(counts >= BOX_COVER * longest)
        if longest < BOX_SIDE or lines[-1] - lines[0] < BOX_SIDE:
            return
        found.append(lines)
    rows, cols = found
    # The outermost rows (a stroke may cross the box), and pairs of columns,
    # the widest first: in a row of boxes apart, the one written in is narrower.
    groups = _consecutive(cols)
    if len(groups) > _BOX_MAX_COLUMNS:
        groups = [groups[0], groups[-1]]
    pairs = sorted(((int(g[0]), int(h[-1])) for n, g in enumerate(groups) for h in groups[n + 1:]),
                   key=lambda pair: pair[0] - pair[1])
    for left, right in pairs:
        if right - left >= BOX_SIDE and (box := _box_at(on, int(rows[0]), int(rows[-1]), left, right)) is not None:
            yield box


def _box_at(on: np.ndarray, top: int, bottom: int, left: int, right: int) -> _Box | None:
    """The bands of the box whose outer rows and columns are these, if its
    sides meet at the corners and it holds a character (see :func:`_boxes`)."""
    h = _bands(on, top, bottom, left, right)
    v = _bands(on.T, left, right, top, bottom) if h is not None else None
    if h is None or v is None:
        return None  # the sides do not meet at the corners
    (_, y0), (y1, _) = h
    (_, x0), (x1, _) = v
    inside = on[y0 + 1:y1, x0 + 1:x1]
    if inside.shape[0] < 3 or inside.shape[1] < 3:
        return None
    if _bar(inside.sum(axis=1) / inside.shape[1], max(b - a for a, b in h) + 1):
        return None  # a bar across: an '8' or a 'B' drawn as a rectangle
    t = max(b - a for a, b in h + v) + 1
    if not inside[t:-t, t:-t].any():
        return None  # nothing inside, away from the sides: an 'O' or a 'D' drawn as a rectangle
    return h, v


def _line_groups(m: np.ndarray, y: np.ndarray, x0: int, x1: int, floor: int) -> list[np.ndarray]:
    """The rows among ``y`` (ascending, full size) of ``m`` (uint8) inked at
    ``floor`` over BOX_COVER of its columns ``x0:x1``, in groups of adjacent
    rows, each with the fainter rows at its edges."""
    part = m[y, x0:x1]
    need = BOX_COVER * (x1 - x0)
    core = np.count_nonzero(part >= floor, axis=1) >= need
    edge = np.flatnonzero(np.count_nonzero(part >= _SHADE_U8, axis=1) >= need)
    return [y[g] for g in _consecutive(edge) if core[g].any()]


def _box_sides(m: np.ndarray, k: int, bands: tuple[_Band, _Band], span: _Band, floor: int) -> list[np.ndarray]:
    """The full-size rows of ``m`` along each of a box's two sides ``bands``
    (reduced ``k`` times), inked over BOX_COVER of the columns ``span``
    (reduced) between the other two: one array a side, empty if it has none."""
    out = []
    for first, last in bands:
        y = np.arange(max(0, (first - 1) * k), min(m.shape[0], (last + 2) * k))
        groups = _line_groups(m, y, span[0] * k, span[1] * k, floor)
        out.append(np.arange(groups[0][0], groups[-1][-1] + 1) if groups else y[:0])
    return out


def _along(inked: np.ndarray, x0: int, x1: int, least: int) -> np.ndarray:
    """The columns of a line drawn over ``x0:x1``, where it runs on while
    ``inked``, and its pieces beyond breaks at least ``least`` long or cut by
    the canvas's edge (the lines of the next boxes in a row)."""
    out = np.zeros(len(inked), dtype=bool)
    out[x0:x1] = True
    for piece in _consecutive(np.flatnonzero(inked)):
        start, stop = piece[0], piece[-1] + 1
        if stop - start >= least or start == 0 or stop == len(inked) or (start <= x1 and stop >= x0):
            out[start:stop] = True
    return np.flatnonzero(out)


def _square_sides(a: np.ndarray, k: int, floor: int, h: tuple[_Band, _Band], v: tuple[_Band, _Band],
                  slack: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]] | None:
    """The full-size rows and columns of the sides of a box found on the ink
    map ``a`` reduced ``k`` times, if they are straight lines that meet at
    square corners with no ink along them on both sides; else None. With
    ``slack`` (a box turned level in whole pixels, its corners a pixel out)
    a corner's pixel counts as inked if one within ``slack`` of it is."""
    (_, y0), (y1, _) = h
    (_, x0), (x1, _) = v
    sides = _box_sides(a, k, h, (x0 + 1, x1), floor), _box_sides(a.T, k, v, (y0 + 1, y1), floor)
    if not all(len(side) for side in sides[0] + sides[1]):
        return None
    for r, c in itertools.product(*sides):
        corner = a[max(0, r[0] - slack):r[-1] + 1 + slack, max(0, c[0] - slack):c[-1] + 1 + slack] >= _SHADE_U8
        if slack:
            corner = np.lib.stride_tricks.sliding_window_view(np.pad(corner, slack), (2 * slack + 1,) * 2).any(
                axis=(2, 3))[slack:-slack, slack:-slack]
        if np.count_nonzero(corner) < BOX_COVER * corner.size:
            return None  # a round corner: a drawn 'O' is inked over its top between its sides, not out to them
    for m, lines, (near, far) in ((a, *sides), (a.T, *sides[::-1])):
        span = m[:, near[-1] + 1:far[0]]
        for line in lines:
            beside = [y for y in (line[0] - 1, line[-1] + 1) if 0 <= y < len(m)]
            if all(np.count_nonzero(span[y] >= floor) > 0.5 * span.shape[1] for y in beside):
                return None  # ink along it on both sides: the middle of a fat stroke, not a line
    return sides


def _cells(a: np.ndarray, sides: tuple[list[np.ndarray], list[np.ndarray]], floor: int) -> list[list[np.ndarray]]:
    """The full-size rows and columns of the lines across a box's span between
    the cells of a row of boxes, as thin as its sides: outside the box (the
    next boxes' sides), and inside it where there is other ink beside them."""
    thick = max(len(side) for side in sides[0] + sides[1]) + 2
    inner, outer = [], []
    for m, (first, second), (near, far) in ((a, *sides), (a.T, *sides[::-1])):
        lines = [g for g in _line_groups(m, np.arange(len(m)), near[-1] + 1, far[0], floor) if len(g) <= thick]
        inner.append([g for g in lines if first[-1] < g[0] and g[-1] < second[0]])
        outer.append([g for g in lines if g[-1] < first[0] or g[0] > second[-1]])
    top, left = sides[0][0][-1] + 1, sides[1][0][-1] + 1  # where the inside begins
    rest = a[top:sides[0][1][0], left:sides[1][1][0]] >= floor
    for g in inner[0]:
        rest[g - top] = False
    for g in inner[1]:
        rest[:, g - left] = False
    if not rest.any():
        inner = [[], []]  # the only ink inside: a '1' drawn with a ruler
    return [i + o for i, o in zip(inner, outer)]


def _without_box(ink: Image.Image, k: int, floor: int, h: tuple[_Band, _Band], v: tuple[_Band, _Band],
                 slack: int = 0) -> Image.Image:
    """The ink map (reduced ``k`` times for :func:`_boxes`) less the lines of its
    printed box, as far as they run on, and those between the cells of a row
    of boxes, a stroke's ink kept where it crosses one; or ``ink`` itself if
    the box's sides are not lines (see :func:`_square_sides`)."""
    a = np.array(ink)
    sides = _square_sides(a, k, floor, h, v, slack)
    if sides is None:
        return ink
    cells = _cells(a, sides, floor)
    clear = np.zeros(a.shape, dtype=bool)
    for axis, (m, c) in enumerate(((a, clear), (a.T, clear.T))):
        other = sides[1 - axis]
        outer = other[0][0], other[1][-1] + 1
        meets = np.concatenate(other + cells[1 - axis])  # where the lines across meet these
        for line, runs_on in [(s, True) for s in sides[axis]] + [(g, False) for g in cells[axis]]:
            x = _along((m[line] >= floor).any(axis=0), *outer, BOX_SIDE * k) if runs_on else np.arange(*outer)
            keep = ~np.isin(x, meets)
            before, after = line[0] - 1, line[-1] + 1
            if before >= 0 and after < m.shape[0]:
                keep &= (m[before, x] >= floor) & (m[after, x] >= floor)  # a stroke crossing
            else:
                keep[:] = False
            x = x[~keep]
            c[line[:, None], x[None, :]] = True
            for edge, beyond in ((before, before - 1), (after, after + 1)):
                if 0 <= beyond < m.shape[0]:  # the line's fringe, where the ink ends beside it
                    c[edge, x[(m[edge, x] >= _SHADE_U8) & (m[beyond, x] < _SHADE_U8)]] = True
    a[clear] = 0
    return Image.fromarray(a, "L")


def _level(a: np.ndarray, t: float) -> np.ndarray:
    """``a`` turned by ``atan(t)`` in whole pixels: each column moved up by
    ``_shear(w, t)``, then each row moved left by ``_shear(h, -t)``, so lines
    of slope ``t`` come out level and the lines square to them upright.
    Nothing is cut off: the image grows by the shifts."""
    for _ in range(2):
        h, w = a.shape
        up = _shear(w, t)
        src = np.arange(h + int(up.max()))[:, None] - int(up.max()) + up[None, :]
        a = np.where((src >= 0) & (src < h), a[np.clip(src, 0, h - 1), np.arange(w)[None, :]], 0).T
        t = -t
    return np.ascontiguousarray(a)


def _straight_edge(first: np.ndarray) -> float | None:
    """The slope of a straight side seen as ``first``, the first inked pixel
    along each line across it, if BOX_COVER of them lie within a pixel and a
    half of one straight line (a stroke crossing it out of the box, or a
    curve, does not), fitted by least squares to those; else None."""
    half = len(first) // 2
    if half < BOX_SIDE:
        return None
    x = np.arange(len(first), dtype=np.float64)
    t = float(np.median(first[half:2 * half] - first[:half])) / half  # whole pixels over half the side
    near = np.abs(first - t * x - np.median(first - t * x)) <= 1.5
    if np.count_nonzero(near) < BOX_COVER * len(first):
        return None
    x, y = x[near], first[near].astype(np.float64)  # then the least-squares line through those near it
    x -= x.mean()
    return float(x @ (y - y.mean()) / (x @ x))


def _box_tilt(on: np.ndarray, rows: np.ndarray, cols: np.ndarray, ink: Image.Image, k: int,
              floor: int) -> float | None:
    """The slope (up to BOX_TILT degrees) at which the ink map ``ink`` holds a
    turned box, or None. The cheap look: ``on``, its reduction (``k`` times)
    inked at half ``floor``, ``rows`` and ``cols`` its counts, is inked near
    the four corners of its ink's extent and across it in the outermost rows
    on each side, as many as a side turned BOX_TILT spans, and in the
    outermost columns too unless it is a row of boxes (its lines run on past
    the sides). Then at full size each side's outer edge (in a row of boxes,
    the top and bottom), the first inked pixel along each line across it, must
    be straight (see :func:`_straight_edge`), all at one slope."""
    ys, xs = np.flatnonzero(rows), np.flatnonzero(cols)
    if ys.size <= BOX_SIDE or xs.size <= BOX_SIDE:
        return None
    y0, y1, x0, x1 = int(ys[0]), int(ys[-1]), int(xs[0]), int(xs[-1])
    d = 2 + int(math.tan(math.radians(BOX_TILT)) * max(x1 - x0, y1 - y0))  # rows a turned side spans
    top, bottom = slice(y0, y0 + d), slice(max(0, y1 + 1 - d), y1 + 1)
    left, right = slice(x0, x0 + d), slice(max(0, x1 + 1 - d), x1 + 1)
    if not (on[top, left].any() and on[bottom, right].any() and on[top, right].any() and on[bottom, left].any()):
        return None  # a corner without ink: an 'O' is round
    if min(rows[top].sum(), rows[bottom].sum()) < BOX_COVER * (x1 - x0 + 1):
        return None
    # Without full outer columns, a row of boxes: its lines run on past the sides.
    sides = 4 if min(cols[left].sum(), cols[right].sum()) >= BOX_COVER * (y1 - y0 + 1) else 2
    W, H = ink.size
    inner_x = ((x0 * 8 + x1) * k // 9 + k, (x0 + 8 * x1) * k // 9)  # the middle of each side, not its corners
    inner_y = ((y0 * 8 + y1) * k // 9 + k, (y0 + 8 * y1) * k // 9)
    bands = (  # (left, top, right, bottom) of each side's band, its lines across it, and how its slope reads
        ((inner_x[0], max(0, (y0 - 1) * k), inner_x[1], min(H, (y0 + d + 1) * k)), False, False, 1),
        ((inner_x[0], max(0, (y1 - d) * k), inner_x[1], min(H, (y1 + 2) * k)), False, True, -1),
        ((max(0, (x0 - 1) * k), inner_y[0], min(W, (x0 + d + 1) * k), inner_y[1]), True, False, -1),
        ((max(0, (x1 - d) * k), inner_y[0], min(W, (x1 + 2) * k), inner_y[1]), True, True, 1))
    slopes = []
    for band, across, from_end, sign in bands[:sides]:
        m = np.asarray(ink.crop(band)) >= floor
        m = m.T if across else m
        if np.count_nonzero(m.any(axis=0)) < BOX_COVER * m.shape[1]:
            return None  # the side has gaps
        t = _straight_edge(m[::-1].argmax(axis=0) if from_end else m.argmax(axis=0))
        if t is None:
            return None
        slopes.append(sign * t)
    t = float(np.median(slopes))
    if max(slopes) - min(slopes) > 2 / (min(x1 - x0, y1 - y0) * k) or abs(t) > math.tan(math.radians(BOX_TILT)):
        return None  # not one slope, or too steep
    return t if abs(t) * max(x1 - x0, y1 - y0) * k >= 1 else None  # level within a pixel: as drawn


def _unboxed(ink: Image.Image, small: np.ndarray, k: int, floor: int) -> tuple[Image.Image, np.ndarray]:
    """The ink map and its reduction without a printed box (see BOX_SIDE):
    as drawn, or turned level with a box turned a little (see BOX_TILT)."""
    on = small >= (floor + 1) // 2  # a thin line split between two rows is in both
    rows, cols = on.sum(axis=1), on.sum(axis=0)
    for box in _boxes(on, rows, cols):
        unboxed = _without_box(ink, k, floor, *box)
        if unboxed is not ink:
            return unboxed, _reduced(unboxed, k)
    t = _box_tilt(on, rows, cols, ink, k, floor) if BOX_TILT else None
    if t is not None:
        level = Image.fromarray(_level(np.asarray(ink), t), "L")
        on = _reduced(level, k) >= (floor + 1) // 2
        for box in _boxes(on, on.sum(axis=1), on.sum(axis=0)):
            unboxed = _without_box(level, k, floor, *box, slack=1)
            if unboxed is not level:
                return unboxed, _reduced(unboxed, k)
    return ink, small


def _floor_u8(small: np.ndarray) -> int:
    """The contrast floor for a reduced ink map: INK_FLOOR, or FAINT_INK_FLOOR
    for a drawing all fainter than that on a spotless page."""
    if int(small.max()) >= _FLOOR_U8:
        return _FLOOR_U8
    return _FAINT_FLOOR_U8 if int(_border(small).max()) <= 2 else _FLOOR_U8


def _glyph_box(small: np.ndarray, floor: int = _FLOOR_U8) -> tuple[tuple[int, int, int, int], int]:
    """``(x0, y0, x1, y1)`` of the ink in a reduced ink map, stray marks left
    out, and the number of pieces of ink it was chosen from.

    A piece outside the others' box shows as a gap in the row or the column
    profile, so where both are gapless (most drawings) the box is the profiles'
    span (counted as one piece). Otherwise the pieces are labelled (8-connected,
    at or above the contrast floor), the dots of a dotted drawing are grouped
    into the strokes they trace (:func:`_dotted_strokes`) and, starting from
    the piece with the most ink, every piece that is big or near (see
    STRAY_MASS) joins, until none does.
    """
    on = small >= floor
    rows = np.flatnonzero(on.any(axis=1))
    if len(rows) == 0:
        raise BlankImage("The canvas is blank.")
    cols = np.flatnonzero(on.any(axis=0))
    if rows[-1] - rows[0] == len(rows) - 1 and cols[-1] - cols[0] == len(cols) - 1:
        return (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1), 1

    from scipy import ndimage

    labels, n = ndimage.label(on, structure=_EIGHT)
    b = np.array([(s[1].start, s[0].start, s[1].stop, s[0].stop)
                  for s in ndimage.find_objects(labels)], dtype=np.float64)
    mass = np.bincount(labels.ravel(), weights=small.ravel(), minlength=n + 1)[1:]
    if DOT_PIECES <= n <= DOT_MAX_PIECES:
        b, mass = _dotted_strokes(b, mass, np.bincount(labels.ravel(), minlength=n + 1)[1:])
    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    stroke = np.maximum(w, h) > 2 * np.minimum(w, h)

    def within(rx: float, up: float, down: float) -> np.ndarray:
        return (b[:, 0] < x1 + rx) & (b[:, 2] > x0 - rx) & (b[:, 1] < y1 + down) & (b[:, 3] > y0 - up)

    keep = mass == mass.max()
    while True:
        x0, y0, x1, y1 = b[keep, 0].min(), b[keep, 1].min(), b[keep, 2].max(), b[keep, 3].max()
        size = max(x1 - x0, y1 - y0)
        dot = STRAY_DOT_REACH * size
        reach = STRAY_REACH * size
        above = STRAY_DOT_LINE * size if x1 - x0 <= STRAY_DOT_NARROW * (y1 - y0) else dot
        near = np.where(stroke, within(reach, reach, reach), within(dot, above, dot))
        grown = keep | near | (mass >= STRAY_MASS * mass[keep].sum())
        if grown.sum() == keep.sum():
            return (int(x0), int(y0), int(x1), int(y1)), n
        keep = grown


_EIGHT = np.ones((3, 3), dtype=bool)

#: Dotted strokes. A client that stamps a disc at every pointer event without
#: joining them leaves a stroke drawn fast as a row of separate dots, which no
#: scan looks like. When the reduced canvas falls into at least DOT_PIECES
#: pieces (:func:`_glyph_box` counts them), or the work image has an Euler
#: number (pieces less holes) of at least DOT_PIECES (dots closer together than
#: the reduction merge in the reduced canvas, not in the work image), and the
#: work image holds at least DOT_PIECES dots (pieces whose long side is at most
#: DOT_ROUND times the diameter of a disc of their area) with DOT_SHARE of the
#: ink, the dots are joined the way a reader joins them: along the shortest
#: tree through their centres, leaving out the edges longer than DOT_REACH
#: times its median edge (the gap between separate strokes), and between two
#: dots DOT_LOOP times that apart and at least DOT_LOOP_HOPS edges apart along
#: the tree (closing an 'O'), with lines as wide as the dots. Stroke widths are
#: normalised after.
DOT_PIECES, DOT_ROUND, DOT_SHARE, DOT_REACH, DOT_LOOP, DOT_LOOP_HOPS = 4, 1.6, 0.6, 2.5, 1.5, 4
#: Most pieces of a reduced canvas searched for a dotted drawing (the search
#: compares every pair; a character's dots number in the tens).
DOT_MAX_PIECES = 400


def _dots(long_side: np.ndarray, area: np.ndarray, mass: np.ndarray) -> np.ndarray | None:
    """Which pieces of a dotted drawing are dots (a long side at most DOT_ROUND
    times the diameter of a disc of the piece's area, px); None unless at least
    DOT_PIECES of them hold DOT_SHARE of the ink."""
    dot = long_side <= DOT_ROUND * np.sqrt(area * (4 / math.pi))
    if dot.sum() < DOT_PIECES or mass[dot].sum() < DOT_SHARE * mass.sum():
        return None
    return dot


def _dotted_strokes(b: np.ndarray, mass: np.ndarray, area: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The boxes ``(x0, y0, x1, y1)`` and ink masses of a reduced canvas's
    pieces, a dotted drawing's dots grouped into the strokes they trace.

    Left apart, every dot of a stroke drawn fast is a small piece away from
    the others: a stray mark by the rules of :func:`_glyph_box`, so a dotted
    'X' would lose its arms. In a drawing of at least DOT_PIECES dots
    holding DOT_SHARE of the ink, two pieces lie as far apart as the gap
    between their boxes plus a dot's size (two dots' centres); the shortest
    tree through the pieces is cut at the edges longer than DOT_REACH times
    its median edge, as in :func:`_joined_dots`, and each part becomes one
    piece. A tap of the pen further off stays apart. Other drawings' pieces
    come back as they are.
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components, minimum_spanning_tree

    w, h = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    dot = _dots(np.maximum(w, h), area, mass)
    if dot is None:
        return b, mass
    gap_x = np.maximum(0.0, np.maximum(b[:, None, 0], b[None, :, 0]) - np.minimum(b[:, None, 2], b[None, :, 2]))
    gap_y = np.maximum(0.0, np.maximum(b[:, None, 1], b[None, :, 1]) - np.minimum(b[:, None, 3], b[None, :, 3]))
    apart = np.hypot(gap_x, gap_y) + np.median(np.maximum(w, h)[dot])
    np.fill_diagonal(apart, 0.0)  # no edge from a piece to itself
    tree = minimum_spanning_tree(apart).tocoo()
    near = tree.data <= DOT_REACH * np.median(tree.data)
    n = len(b)
    links = coo_matrix((np.ones(int(near.sum())), (tree.row[near], tree.col[near])), shape=(n, n))
    groups, group = connected_components(links, directed=False)
    if groups == n:
        return b, mass
    grouped = np.full((groups, 4), np.inf)
    grouped[:, 2:] = -np.inf
    for k, extreme in enumerate((np.minimum, np.minimum, np.maximum, np.maximum)):
        extreme.at(grouped[:, k], group, b[:, k])
    return grouped, np.bincount(group, weights=mass, minlength=groups)


_QUAD_EULER = np.zeros(16, dtype=np.int64)
_QUAD_EULER[[1, 2, 4, 8]], _QUAD_EULER[[7, 11, 13, 14]], _QUAD_EULER[[6, 9]] = 1, -1, -2


def _euler_number(a: np.ndarray, level: float = 0.5) -> int:
    """Pieces (8-connected) less holes of ``a >= level``, counted from its 2x2
    blocks (Gray's quads: one pixel +1, three -1, a diagonal pair -2, over 4).

    It is taken of every drawing, so in one compiled pass where
    ``worker._euler`` was built: 4 us an image, where labelling the pieces
    cost 30 to 45 us and the numpy code below, the same count, 30.
    """
    if _euler is not None and a.dtype == np.float32 and a.flags.c_contiguous:
        return _euler.euler_number(a, a.shape[0], a.shape[1], level)
    h, w = a.shape
    framed = np.zeros((h + 2, w + 2), dtype=np.uint8)
    np.greater_equal(a, level, out=framed[1:-1, 1:-1].view(bool))
    pairs = framed[:-1] + 2 * framed[1:]  # each pixel and the one below: 0-3
    quads = pairs[:, :-1] + 4 * pairs[:, 1:]  # and the two to their right: 0-15
    return int(np.bincount(quads.ravel(), minlength=16) @ _QUAD_EULER) // 4


def _joined_dots(a: np.ndarray) -> np.ndarray:
    """The work image ``a`` (float, peak 1) with a dotted drawing's dots joined."""
    from scipy import ndimage
    from scipy.sparse.csgraph import minimum_spanning_tree, shortest_path

    on = a >= 0.5
    labels, n = ndimage.label(on, structure=_EIGHT)
    if n < DOT_PIECES:
        return a
    index = np.arange(1, n + 1)
    area = ndimage.sum_labels(on, labels, index)
    boxes = ndimage.find_objects(labels)
    long_side = np.array([max(b[0].stop - b[0].start, b[1].stop - b[1].start) for b in boxes])
    dot = _dots(long_side, area, ndimage.sum_labels(a, labels, index))
    if dot is None:
        return a
    centres = np.array(ndimage.center_of_mass(a, labels, index))
    d = np.sqrt(((centres[:, None] - centres[None]) ** 2).sum(-1))
    tree = minimum_spanning_tree(d).tocoo()
    if tree.nnz == 0:  # every centre in one place
        return a
    step = np.median(tree.data)
    # The tree's edges, and the other short ones between dots at least
    # DOT_LOOP_HOPS apart along it: they close a loop (an 'O'), not a bend.
    pairs = {(int(i), int(j)) for i, j, v in zip(tree.row, tree.col, tree.data) if v <= DOT_REACH * step}
    hops = shortest_path(tree, directed=False, unweighted=True)
    loops = np.triu((d <= DOT_LOOP * step) & (hops >= DOT_LOOP_HOPS), 1)
    pairs |= {(int(i), int(j)) for i, j in zip(*np.nonzero(loops))}
    width = max(1, round(2 * math.sqrt(np.median(area[dot]) / math.pi)))
    im = _image(_u8(a))
    draw = ImageDraw.Draw(im)
    for i, j in pairs:
        (y0, x0), (y1, x1) = centres[i], centres[j]
        draw.line([(x0, y0), (x1, y1)], fill=255, width=width)
    return np.asarray(im, dtype=np.float32) * np.float32(1 / 255)


#: Outlined strokes (a hollow brush, outlined text): the drawing is thin lines
#: around strokes left empty. Where its lines are thinner than HOLLOW_WIDTH
#: work pixels and it has a hole (at HOLLOW_LEVEL), the holes shaped like
#: strokes are filled: at least HOLLOW_ELONGATION times the area of their
#: widest inscribed circle, whose radius is at most HOLLOW_RADIUS of the
#: glyph's long side. A letter's counters (the bowls of 'B', the eye of 'e',
#: the triangle of 'A', an 'O' up to five times as tall as wide) are rounder
#: or wider. The look (a labelling and a distance transform, about 0.2 ms)
#: is taken for about one pen drawing in 25 and one canvas in 250.
HOLLOW_WIDTH, HOLLOW_ELONGATION, HOLLOW_RADIUS, HOLLOW_LEVEL = 3.0, 5.0, 0.15, 0.25


def _filled_outlines(a: np.ndarray, long_px: int) -> np.ndarray:
    """The work image with its stroke-shaped holes filled (see HOLLOW_WIDTH), or ``a``."""
    from scipy import ndimage

    labels, n = ndimage.label(a < HOLLOW_LEVEL)  # the page's pieces, 4-connected
    hole = np.ones(n + 1, dtype=bool)
    hole[_border(labels)] = False  # the page around the glyph
    hole[0] = False  # ink
    if not hole.any():
        return a
    inside = hole[labels]
    depth = ndimage.distance_transform_edt(inside)
    r = np.zeros(n + 1)
    np.maximum.at(r, labels[inside], depth[inside])
    area = np.bincount(labels.ravel(), minlength=n + 1)
    stroke = hole & (area >= HOLLOW_ELONGATION * math.pi * r * r) & (r <= HOLLOW_RADIUS * long_px)
    if not stroke.any():
        return a
    out = a.copy()
    out[stroke[labels]] = 1.0
    return out


#: A stroke thinner than this (px at WORK_SIZE) is max-pooled, not averaged,
#: down to the work size (see :func:`_to_emnist_u8`). The thinnest pen people
#: use, 2.5% of the canvas, measures about 2 px there; a 1 px line on a 280 px
#: canvas about 0.3.
THIN_STROKE = 1.5


def _max_pool(im: Image.Image, f: int) -> Image.Image:
    """The maximum over every ``f`` x ``f`` block of an 'L' image (edge blocks
    cut short; padding them would blow a 2 px tall crop up to ``f`` rows)."""
    a = np.asarray(im)
    h, w = a.shape
    a = np.maximum.reduceat(a, np.arange(0, h, f), axis=0)
    return Image.fromarray(np.ascontiguousarray(np.maximum.reduceat(a, np.arange(0, w, f), axis=1)), "L")


def _reduced(ink: Image.Image, k: int) -> np.ndarray:
    """The ink map reduced ``k`` times (box averages): the first look."""
    return np.asarray(ink.reduce(k) if k > 1 else ink)


def _to_emnist_u8(ink: Image.Image) -> np.ndarray:
    W, H = ink.size
    # 1. A cheap look at the whole canvas: where is the ink, how much is there?
    # A narrow canvas is not reduced, unless it is long: 4,000,000 x 1 px in
    # 1,300,000 pieces took 4 s and 650 MB to sort out.
    k = _REDUCE if min(W, H) >= 8 * _REDUCE else -(-max(W, H) // 1000)
    small = _reduced(ink, k)
    if _shaded(small):
        ink = _without_shade(ink)
        small = _reduced(ink, k)
    if _lined(small):
        ink = _without_lines(ink)
        small = _reduced(ink, k)
    if (tilt := _tilted_lines(small)) is not None:
        ink = _without_tilted_lines(ink, k, *tilt)
        small = _reduced(ink, k)
    floor = _floor_u8(small)
    if BOX_SIDE:
        ink, small = _unboxed(ink, small, k, floor)
    (x0, y0, x1, y1), pieces = _glyph_box(small, floor)
    m = _CROP_MARGIN
    x0, y0 = max(0, x0 * k - m), max(0, y0 * k - m)
    x1, y1 = min(W, x1 * k + m), min(H, y1 * k + m)
    crop = ink.crop((x0, y0, x1, y1))

    # 2. The crop at WORK_SIZE px (long side), contrast stretched to full range.
    cw, ch = crop.size
    scale = WORK_SIZE / max(cw, ch)
    sw, sh = max(1, round(cw * scale)), max(1, round(ch * scale))
    work = crop.resize((sw, sh), Image.BOX if scale < 1 else Image.BILINEAR)
    a = np.asarray(work, dtype=np.float32)
    peak = a.max()
    if peak < floor:
        raise BlankImage("The canvas is blank.")
    a *= 1.0 / peak
    area = a.sum()
    mass = area / (scale * scale)  # canvas px at full contrast
    if mass < MIN_INK_MASS_FRAC * W * H:
        raise BlankImage("The canvas is nearly blank (too little ink).")

    # 3. The glyph's tight box (0.1 level, as EMNIST measures) and stroke width.
    width = _stroke_width(a, area)
    pool = math.ceil(1.0 / scale)
    if width < THIN_STROKE and pool >= 3:
        # Averaged down, a stroke much thinner than a work pixel (a 1 px line
        # on a big canvas) fades into a faint, broken trace that no edge shift
        # restores; the maximum over blocks of canvas pixels, a little smaller
        # than the work size and brought up to it, keeps it whole and at full
        # contrast, one or two work pixels wide.
        work = _max_pool(crop, pool).resize((sw, sh), Image.BILINEAR)
        a = np.asarray(work, dtype=np.float32)
        peak = a.max()
        a *= 1.0 / peak
        area = a.sum()
        width = _stroke_width(a, area)
    if DOT_PIECES > 0 and (pieces >= DOT_PIECES or _euler_number(a) >= DOT_PIECES):
        joined = _joined_dots(a)
        if joined is not a:
            a, area = joined, float(joined.sum())
            width = _stroke_width(a, area)
            work, peak = _image(_u8(a)), 255  # at full contrast: the lines are drawn at 255
    rows = np.flatnonzero((a > 0.1).any(axis=1))
    cols = np.flatnonzero((a > 0.1).any(axis=0))
    gx0, gx1, gy0, gy1 = int(cols[0]), int(cols[-1]) + 1, int(rows[0]), int(rows[-1]) + 1
    long_px = max(gx1 - gx0, gy1 - gy0)
    if width < HOLLOW_WIDTH and _euler_number(a, HOLLOW_LEVEL) <= 0:
        filled = _filled_outlines(a, long_px)
        if filled is not a:
            a, area = filled, float(filled.sum())
            width = _stroke_width(a, area)
            work, peak = _image(_u8(a)), 255
    tap = long_px / scale < TAP_SIZE * min(W, H)
    if width <= 0 or long_px < (MIN_EXTENT_PER_WIDTH if tap else BLOB_EXTENT_PER_WIDTH) * width:
        raise BlankImage("The canvas holds a dot or a blob, not a character.")

    # 4. Move every edge by s so that, once the glyph (long side long_px + 2s)
    # is scaled to GLYPH_BOX, its stroke width (width + 2s) is the target T,
    # its current width clamped to [LOW, HIGH]:
    #   (width + 2s) / (long_px + 2s) = T / GLYPH_BOX.
    w_now = width * GLYPH_BOX / long_px  # its width if only rescaled
    r = min(max(w_now, STROKE_TARGET_LOW), STROKE_TARGET_HIGH) / GLYPH_BOX
    s = (r * long_px - width) / (2.0 * (1.0 - r))
    s = min(max(s, -0.45 * width), long_px)
    if peak < 255:
        work = _image(_u8(a))
    if abs(s) >= 0.125:
        bp = int(math.ceil(3 * _SIGMA + max(s, 0.0))) + 1
        padded = Image.new("L", (sw + 2 * bp, sh + 2 * bp), 0)
        padded.paste(work, (bp, bp))
        blurred = np.asarray(padded.filter(ImageFilter.GaussianBlur(_SIGMA)))
        work = Image.fromarray(_edge_shift_lut(s)[blurred], "L")
    else:
        bp = 0

    # 5. Centre the (shifted) box in a square window, resample to 28x28.
    side = long_px + 2.0 * s  # glyph long side after the shift (work px)
    half = 0.5 * side * OUT_SIZE / GLYPH_BOX  # half of the output window (work px)
    cx = bp + 0.5 * (gx0 + gx1)
    cy = bp + 0.5 * (gy0 + gy1)
    ww, wh = work.size
    need = half - min(cx, cy, ww - cx, wh - cy)
    if need > 0:  # the window reaches past the image: pad with background
        p2 = int(math.ceil(need)) + 1
        bigger = Image.new("L", (ww + 2 * p2, wh + 2 * p2), 0)
        bigger.paste(work, (p2, p2))
        work, cx, cy = bigger, cx + p2, cy + p2
    out = work.resize((OUT_SIZE, OUT_SIZE), Image.BILINEAR, box=(cx - half, cy - half, cx + half, cy + half))
    arr = np.asarray(out, dtype=np.float32)
    mx = arr.max()
    if mx <= 0:
        raise BlankImage("No ink is left after normalisation.")
    return arr * np.float32(1.0 / mx)


def to_emnist(ink: np.ndarray) -> np.ndarray:
    """An ink map (HxW, [0, 1], 1 = ink) -> an EMNIST-like (28, 28) float32 image.

    Crops to the ink, normalises the stroke width into the training range,
    centres the glyph by its bounding box in a square, resizes its long side to
    24 px, pads to 28x28 and stretches the intensity so the maximum is 1.
    Raises :class:`~inkq.errors.BlankImage` for a blank or near-blank canvas.
    """
    ink = np.asarray(ink)
    if ink.ndim != 2 or ink.size == 0:
        raise BlankImage(f"An ink map is a non-empty 2-D array, not one of shape {ink.shape}.")
    if ink.dtype == np.uint8:
        u8 = ink
    else:
        u8 = np.round(np.clip(np.nan_to_num(ink.astype(np.float32)), 0.0, 1.0) * 255).astype(np.uint8)
    return _to_emnist_u8(Image.fromarray(u8, "L"))


def preprocess(data: bytes, *, max_pixels: int = MAX_PIXELS) -> np.ndarray:
    """Image bytes -> EMNIST-like (28, 28) float32 in [0, 1]: ``to_emnist(decode(data))``.

    Raises only :class:`~inkq.errors.ItemError` subclasses. Common canvas PNGs
    take the faster decoder of :mod:`worker.fastpng` (same ink map, exactly);
    everything else, and every error, goes through Pillow.
    """
    from .fastpng import ink_u8_fast

    ink = ink_u8_fast(data, max_pixels) or _decode_u8(data, max_pixels)
    return _to_emnist_u8(ink)
