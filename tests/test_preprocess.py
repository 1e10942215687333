"""Canvas preprocessing: every PNG mode and polarity, every error, blank canvases,
and a numeric match between preprocessed renderings and the training images."""

from __future__ import annotations

import io
import math
import struct
import time
import zlib

import numpy as np
import pytest
from PIL import Image, ImageDraw

from inkq.errors import BlankImage, ImageTooLarge, InvalidImage, ItemError, UnsupportedFormat
from tests.conftest import compiler_found
from worker import preprocess as P
from worker.emnist import load_split
from worker.preprocess import ACCEPTED_FORMATS, decode, preprocess, to_emnist
from worker.render import render_canvas, render_pen




def png(im: Image.Image, fmt: str = "PNG", **kw) -> bytes:
    buf = io.BytesIO()
    im.save(buf, format=fmt, **kw)
    return buf.getvalue()


def glyph_mask(size: int = 280) -> np.ndarray:
    """An anti-aliased 'F' drawn with a pen (float ink map), off-centre."""
    big = Image.new("L", (size * 4, size * 4), 0)
    d = ImageDraw.Draw(big)
    w = int(size * 4 * 0.05)
    x0, y0, x1, y1 = 300, 200, 300 + 400, 200 + 640
    d.line([(x0, y1), (x0, y0), (x1, y0)], fill=255, width=w, joint="curve")
    d.line([(x0, (y0 + y1) // 2), (x0 + 300, (y0 + y1) // 2)], fill=255, width=w)
    return np.asarray(big.resize((size, size), Image.BOX), dtype=np.float32) / 255.0


INK = glyph_mask()


@pytest.fixture(scope="module")
def reference() -> np.ndarray:
    """The preprocessed glyph from the browser case: black ink on transparent."""
    return preprocess(_ink_png(INK))


def _compose(fg, bg) -> np.ndarray:
    fg, bg = np.asarray(fg, np.float32), np.asarray(bg, np.float32)
    return np.round(bg * (1 - INK[..., None]) + fg * INK[..., None]).astype(np.uint8)


def _variants() -> dict[str, bytes]:
    gray_dark_on_white = np.round(255 * (1 - INK)).astype(np.uint8)
    out: dict[str, bytes] = {}
    out["RGBA transparent"] = png(Image.fromarray(np.dstack([np.zeros((280, 280, 3), np.uint8),
                                                             np.round(INK * 255).astype(np.uint8)]), "RGBA"))
    out["RGBA white ink on transparent"] = png(Image.fromarray(np.dstack([np.full((280, 280, 3), 255, np.uint8),
                                                                          np.round(INK * 255).astype(np.uint8)]), "RGBA"))
    out["RGBA opaque white bg"] = png(Image.fromarray(_compose([0, 0, 0], [255, 255, 255])).convert("RGBA"))
    out["RGB dark on white"] = png(Image.fromarray(_compose([20, 20, 20], [250, 250, 250])))
    out["RGB light on dark"] = png(Image.fromarray(_compose([255, 255, 255], [0, 0, 0])))
    out["RGB red on white"] = png(Image.fromarray(_compose([220, 30, 30], [255, 255, 255])))
    out["RGB blue on yellow"] = png(Image.fromarray(_compose([30, 60, 200], [250, 240, 120])))
    out["RGB green on black"] = png(Image.fromarray(_compose([30, 200, 60], [0, 0, 0])))
    out["L dark on white"] = png(Image.fromarray(gray_dark_on_white, "L"))
    out["L light on dark"] = png(Image.fromarray(255 - gray_dark_on_white, "L"))
    out["L faint pencil"] = png(Image.fromarray(np.round(255 - 90 * INK).astype(np.uint8), "L"))
    out["LA transparent"] = png(Image.fromarray(np.dstack([np.zeros((280, 280), np.uint8),
                                                           np.round(INK * 255).astype(np.uint8)]), "LA"))
    out["1 bilevel"] = png(Image.fromarray(gray_dark_on_white, "L").convert("1", dither=Image.NONE))
    out["P palette"] = png(Image.fromarray(_compose([200, 0, 0], [255, 255, 255])).convert("P", palette=Image.ADAPTIVE))
    pal = Image.fromarray(gray_dark_on_white, "L").convert("P")
    out["P with transparency"] = png(pal, transparency=255)
    out["I;16"] = png(Image.fromarray((65535 - np.round(INK * 65535)).astype(np.uint16)))
    out["JPEG dark on white"] = png(Image.fromarray(_compose([0, 0, 0], [255, 255, 255])), "JPEG", quality=80)
    out["WEBP"] = png(Image.fromarray(_compose([0, 0, 0], [255, 255, 255])), "WEBP", lossless=True)
    out["BMP"] = png(Image.fromarray(_compose([0, 0, 0], [255, 255, 255])), "BMP")
    frames = [Image.fromarray(np.round(255 * (1 - INK)).astype(np.uint8), "L").convert("P"),
              Image.new("P", (280, 280), 0)]
    out["GIF animated (first frame)"] = png(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100)
    return out


VARIANTS = _variants()


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_every_mode_and_polarity_gives_the_same_glyph(name, reference):
    out = preprocess(VARIANTS[name])
    assert out.shape == (28, 28) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() == pytest.approx(1.0)
    # Same drawing, so nearly the same 28x28 image whatever the encoding.
    corr = np.corrcoef(out.ravel(), reference.ravel())[0, 1]
    assert corr > 0.97, f"{name}: correlation {corr:.3f} with the transparent-canvas reference"


def test_decode_ink_map_browser_case():
    ink = decode(VARIANTS["RGBA transparent"])
    assert ink.shape == (280, 280) and ink.dtype == np.float32
    assert np.abs(ink - INK).max() <= 1 / 255 + 1e-6


def test_decode_polarity_opaque():
    for name in ("RGB dark on white", "RGB light on dark", "RGB blue on yellow", "L dark on white"):
        ink = decode(VARIANTS[name])
        assert ink[INK > 0.99].min() > 0.5, name  # ink where the pen was
        assert ink[INK == 0].max() < 0.05, name  # nothing elsewhere


@pytest.mark.parametrize("im", [
    Image.fromarray((1.0 - INK).astype(np.float32)),  # F, 0..1
    Image.fromarray((255 * (1.0 - INK)).astype(np.float32)),  # F, 0..255
    Image.fromarray(np.round(INK * 65535).astype(np.int32)),  # I, 16-bit range
    Image.fromarray(np.round(INK * 255).astype(np.int32)),  # I, 8-bit range
])
def test_wide_modes(im):
    """Modes I and F (16-bit PNGs open as I;16 or I, TIFFs as F) use the same ink logic."""
    assert im.mode in ("I", "F")
    ink = np.asarray(P._ink_u8(im), np.float32) / 255
    assert np.abs(ink - INK).max() < 0.01


def test_upright_orientation():
    """An 'F' drawn upright comes out upright: bar at the top, stem on the left."""
    out = preprocess(VARIANTS["RGBA transparent"])
    assert out[:14].sum() > out[14:].sum() * 1.1
    assert out[:, :14].sum() > out[:, 14:].sum() * 1.1


def _with_orientation(im: Image.Image, orientation: int | None, fmt: str = "JPEG") -> bytes:
    buf = io.BytesIO()
    kw = {}
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        kw["exif"] = exif
    im.convert("RGB").save(buf, fmt, quality=95, **kw)
    return buf.getvalue()


#: How a phone stores a photo held each way (EXIF orientation: the turn that
#: brings the stored pixels upright).
STORED = [(3, Image.ROTATE_180), (6, Image.ROTATE_90), (8, Image.ROTATE_270), (2, Image.FLIP_LEFT_RIGHT),
          (5, Image.TRANSPOSE)]


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
@pytest.mark.parametrize("orientation,stored", STORED)
def test_exif_orientation_is_applied_as_viewers_do(fmt, orientation, stored):
    """A photo taken with the phone held sideways reads as the character it shows."""
    page = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(page).line([(60, 60), (220, 60), (120, 240)], fill=0, width=14)  # a 7
    upright = preprocess(_with_orientation(page, None, fmt))
    turned = page.transpose(stored)
    assert np.abs(preprocess(_with_orientation(turned, orientation, fmt)) - upright).mean() < 0.01
    # without the tag the same pixels are another glyph: the test sees the turn
    assert np.abs(preprocess(_with_orientation(turned, None, fmt)) - upright).mean() > 0.05


def test_unreadable_exif_is_ignored():
    page = Image.new("L", (280, 280), 255)
    ImageDraw.Draw(page).line([(60, 60), (220, 60), (120, 240)], fill=0, width=14)
    buf = io.BytesIO()
    page.convert("RGB").save(buf, "JPEG", quality=95, exif=b"Exif\x00\x00MM\x00*\xff\xff\xff\xf0garbage")
    assert np.abs(preprocess(buf.getvalue()) - preprocess(_with_orientation(page, None))).mean() < 0.01


# --------------------------------------------------------------------------- errors


def _png_header_only(w: int, h: int) -> bytes:
    def chunk(t: bytes, d: bytes) -> bytes:
        return struct.pack(">I", len(d)) + t + d + struct.pack(">I", zlib.crc32(t + d) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 10)) + chunk(b"IEND", b"")


def _corrupt_middle(data: bytes) -> bytes:
    b = bytearray(data)
    m = len(b) // 2
    b[m : m + 64] = b"\xff" * 64
    return bytes(b)


@pytest.mark.parametrize("data,exc", [
    (b"", InvalidImage),
    (b"hello, not an image", InvalidImage),
    (b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, InvalidImage),
    (VARIANTS["RGB dark on white"][:300], InvalidImage),  # truncated
    (_corrupt_middle(VARIANTS["RGB dark on white"]), InvalidImage),  # broken zlib stream
    (_png_header_only(0, 10), InvalidImage),  # zero size
    (_png_header_only(3000, 3000), ImageTooLarge),  # 9 Mpx header, no pixels behind it
    (_png_header_only(200_000, 200_000), ImageTooLarge),  # Pillow's own bomb limit
    (png(Image.new("RGB", (10, 10)), "TIFF"), UnsupportedFormat),
    (png(Image.new("RGB", (16, 16)), "ICO"), UnsupportedFormat),
])
def test_errors(data, exc):
    with pytest.raises(exc) as info:
        preprocess(data)
    assert isinstance(info.value, ItemError)


def test_a_header_past_pillows_bomb_limit_is_refused_with_ours():
    with pytest.raises(ImageTooLarge) as info:
        preprocess(_png_header_only(200_000, 200_000), max_pixels=4_000_000)
    assert info.value.message == "The image is 40000000000 pixels; the limit is 4000000."


def test_max_pixels_is_checked_before_decoding():
    data = VARIANTS["RGB dark on white"]
    with pytest.raises(ImageTooLarge, match="280x280"):
        decode(data, max_pixels=280 * 280 - 1)
    assert decode(data, max_pixels=280 * 280).shape == (280, 280)


def _jpeg_with_scans(extra: int) -> bytes:
    """A progressive 2000x2000 JPEG with ``extra`` copies of one of its AC scans
    (with the Huffman table before it): each costs a dozen bytes and a pass
    over the whole image."""
    buf = io.BytesIO()
    Image.new("L", (2000, 2000), 255).save(buf, format="JPEG", progressive=True)
    data = buf.getvalue()
    segments, i = [], 2
    while data[i + 1] != 0xD9:
        end = i + 2 + struct.unpack(">H", data[i + 2:i + 4])[0]
        if data[i + 1] == 0xDA:  # the scan's entropy-coded data runs to the next marker
            while not (data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8))):
                end += 1
        segments.append(data[i:end])
        i = end
    ac = next(k for k, seg in enumerate(segments) if seg[1] == 0xDA and seg[5 + 2 * seg[4]] > 0)
    return data[:2] + b"".join(segments) + (segments[ac - 1] + segments[ac]) * extra + b"\xff\xd9"


def test_a_jpeg_of_endless_scans_is_refused_before_decoding():
    """A per-item error in milliseconds, where decoding the 2 MB of scans took
    27 s; a JPEG with as many scans as encoders write reads as before."""
    with pytest.raises(InvalidImage, match="more than 256 scans"):
        preprocess(_jpeg_with_scans(54_000))
    with pytest.raises(BlankImage):  # decoded: the page is white
        preprocess(_jpeg_with_scans(P.MAX_JPEG_SCANS - 10))
    for mode in ("L", "RGB"):
        buf = io.BytesIO()
        Image.open(io.BytesIO(VARIANTS["RGB dark on white"])).convert(mode).save(
            buf, format="JPEG", progressive=True, quality=90)
        assert preprocess(buf.getvalue()).max() > 0.5


@pytest.mark.parametrize("fmt", ["GIF", "PNG", "WEBP"])
def test_an_animation_is_read_as_its_first_frame_and_no_further(fmt, monkeypatch):
    """Viewers without animation show the first frame, and so do we. Counting
    frames reads all of them: 100,000 one-pixel GIF frames fit in the 2 MB an
    image may have, and took 0.4 s an image to count (2 ms to read the first)."""
    from PIL import GifImagePlugin

    def drawn(shape: str) -> Image.Image:
        im = Image.new("RGB", (280, 280), "white")
        draw = ImageDraw.Draw(im)
        if shape == "bar":
            draw.line([(140, 40), (140, 240)], fill="black", width=18)
        else:
            draw.ellipse([60, 40, 220, 240], outline="black", width=18)
        return im

    def encoded(frames: list[Image.Image]) -> bytes:
        buf = io.BytesIO()
        frames[0].save(buf, format=fmt, save_all=True, append_images=frames[1:], duration=100)
        return buf.getvalue()

    frames_read = []
    seek = GifImagePlugin.GifImageFile._seek
    monkeypatch.setattr(GifImagePlugin.GifImageFile, "_seek",
                        lambda im, frame, *a, **k: frames_read.append(frame) or seek(im, frame, *a, **k))
    animation = encoded([drawn("bar"), drawn("ring"), drawn("ring")])
    assert np.abs(preprocess(animation) - preprocess(encoded([drawn("bar")]))).max() < 0.02
    assert max(frames_read, default=0) == 0

def test_garbage_never_escapes_as_another_exception():
    rng = np.random.default_rng(1)
    good = VARIANTS["RGBA transparent"]
    for i in range(200):
        b = bytearray(good)
        for j in rng.integers(8, len(b), size=int(rng.integers(1, 20))):
            b[j] = int(rng.integers(256))
        try:
            preprocess(bytes(b))
        except ItemError:
            pass


@pytest.mark.parametrize("im", [
    Image.new("RGBA", (280, 280), (0, 0, 0, 0)),
    Image.new("RGB", (280, 280), "white"),
    Image.new("L", (280, 280), 0),
    Image.new("L", (1, 1), 255),
])
def test_blank_canvases(im):
    with pytest.raises(BlankImage):
        preprocess(png(im))


def _dot(diameter: float) -> bytes:
    im = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    r = diameter / 2
    ImageDraw.Draw(im).ellipse([140 - r, 100 - r, 140 + r, 100 + r], fill=(0, 0, 0, 255))
    return png(im)


@pytest.mark.parametrize("diameter", [2, 6, 12, 20])
def test_a_stray_dot_is_blank(diameter):
    """Dots up to the thickest pen (7% of 280 = 20 px) are not characters."""
    with pytest.raises(BlankImage):
        preprocess(_dot(diameter))


def test_noise_is_blank():
    rng = np.random.default_rng(0)
    noisy = np.clip(245 + rng.normal(0, 4, (280, 280)), 0, 255).astype(np.uint8)
    with pytest.raises(BlankImage):
        preprocess(png(Image.fromarray(noisy, "L"), "JPEG", quality=60))


@pytest.mark.parametrize("contrast", [0.08, 0.12, 0.18])
def test_faint_drawings_on_a_spotless_page_are_drawings(reference, contrast):
    """Light grey on white, or a brush at low opacity, is a drawing, not a blank
    canvas; on a noisy page the same faint ink cannot be told from the noise."""
    grey = np.round(255 - 255 * contrast * INK).astype(np.uint8)
    for data in (_ink_png(INK * contrast), png(Image.fromarray(grey, "L"))):
        corr = np.corrcoef(preprocess(data).ravel(), reference.ravel())[0, 1]
        assert corr > 0.95, corr
    noisy = np.clip(grey + np.random.default_rng(0).normal(0, 3, grey.shape), 0, 255).astype(np.uint8)
    with pytest.raises(BlankImage):
        preprocess(png(Image.fromarray(noisy, "L")))


def test_a_marker_a_tenth_of_the_canvas_wide_draws_characters_not_blobs(emnist_dir):
    """Characters drawn small with a thick marker fill in, but they are not taps:
    of these 300 (10% pen, 30-90% of the canvas) the taps' rule alone refuses 13
    as blobs."""
    from worker.render import _trace

    X, _ = load_split(emnist_dir, "test")
    refused = 0
    for i, x in enumerate(X[:300]):
        ink = _trace(x, np.random.default_rng(i), 0.10)
        try:
            preprocess(_ink_png(ink))
        except BlankImage:
            refused += 1
    assert refused <= 5, refused


def test_small_thin_one_is_not_blank():
    """A short thin stroke ('1' at 20% of the canvas, pen 2.5%) is a character."""
    im = Image.new("RGBA", (280, 280), (0, 0, 0, 0))
    ImageDraw.Draw(im).line([(140, 110), (140, 166)], fill=(0, 0, 0, 255), width=7)
    out = preprocess(png(im))
    assert out.shape == (28, 28)


# --------------------------------------------------------------------------- stray marks


@pytest.mark.parametrize("size", [280, 420])
def test_a_one_pixel_line_keeps_its_shape(reference, size, monkeypatch):
    """A 1 px line (a pencil tool, a thin brush on a big canvas) is far thinner
    than a pixel of the work size: averaged down it fades into a faint, broken
    trace. It comes out as the same glyph drawn with a pen."""
    im = Image.new("L", (size, size), 255)
    d = ImageDraw.Draw(im)
    s = size / 280
    x0, y0, x1, y1 = 75 * s, 50 * s, 175 * s, 210 * s
    d.line([(x0, y1), (x0, y0), (x1, y0)], fill=0, width=1)
    d.line([(x0, (y0 + y1) / 2), (x0 + 75 * s, (y0 + y1) / 2)], fill=0, width=1)
    data = png(im)
    corr = np.corrcoef(preprocess(data).ravel(), reference.ravel())[0, 1]
    assert corr > 0.9
    monkeypatch.setattr(P, "THIN_STROKE", 0.0)
    assert np.corrcoef(preprocess(data).ravel(), reference.ravel())[0, 1] < corr - 0.05


@pytest.mark.parametrize("size", [700, 1300, 2000])
@pytest.mark.parametrize("pen", [0.02, 0.05, 0.07])
def test_a_bar_on_a_big_canvas_reads_as_on_a_small_one(size, pen):
    """A '1' or an 'l' is a bar: on a phone's or a tablet's canvas (1,000 px and
    more), cropped and brought to the work size, it can fill its map's width,
    and its stroke width was measured without the edges along the map's sides
    (it was refused as a blob, or thinned away)."""
    def bar(side: int) -> np.ndarray:
        im = Image.new("L", (side, side), 255)
        ImageDraw.Draw(im).line([(side // 2, side * 0.15), (side // 2, side * 0.85)], fill=0,
                                width=round(pen * side))
        return preprocess(png(im))

    small, big = bar(280), bar(size)
    assert np.corrcoef(small.ravel(), big.ravel())[0, 1] > 0.95
    assert abs(float(big.sum()) - float(small.sum())) < 0.2 * float(small.sum())

def _long_thin(w: int, h: int, page: str) -> bytes:
    """A w x h page (w long) with a third of its middle inked: on a plain page, a
    faint gradient (uneven light) or as a row of dots, one pixel in three."""
    a = np.full((h, w), 255.0)
    if page == "shaded":
        a -= 40 * np.arange(w)[None, :] / w
    if page == "dotted":
        a[:, w // 3: 2 * w // 3: 3] = 0
    else:
        a[h // 3: max(h // 3 + 1, 2 * h // 3), w // 3: 2 * w // 3] = 0
    return png(Image.fromarray(a.astype(np.uint8), "L"))


@pytest.mark.parametrize("page", ["plain", "shaded", "dotted"])
@pytest.mark.parametrize("w, h", [(4_000_000, 1), (2_000_000, 2), (400_000, 10), (10, 400_000)])
def test_a_long_thin_image_costs_no_more_than_a_square_one(w, h, page):
    """Images of a few kB within the pixel limit, 4,000,000 x 1 px: each step
    sized by the short side alone asked for up to 34 GB (a MemoryError), 4.5 GB
    and 26 s (the uneven-light median), or 650 MB and 4 s (a million pieces)."""
    import tracemalloc

    data = _long_thin(w, h, page)
    tracemalloc.start()
    try:
        preprocess(data)
    except ItemError:
        pass
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    assert peak < 150e6, f"{peak / 1e6:.0f} MB"

def _ink_png(ink: np.ndarray) -> bytes:
    arr = np.zeros(ink.shape + (4,), np.uint8)
    arr[..., 3] = np.round(np.clip(ink, 0, 1) * 255)
    return png(Image.fromarray(arr, "RGBA"))


def _with_dots(ink: np.ndarray, centres, diameter: float) -> np.ndarray:
    im = Image.fromarray(np.round(ink * 255).astype(np.uint8), "L")
    d = ImageDraw.Draw(im)
    r = diameter / 2
    for cx, cy in centres:
        d.ellipse([cx - r, cy - r, cx + r, cy + r], fill=255)
    return np.asarray(im, np.float32) / 255


# The glyph 'F' of INK spans x 68..175, y 43..210 of the 280 px canvas: the dots lie
# beyond a quarter of its height to its left or right, or on its diagonals.
@pytest.mark.parametrize("centres", [[(255, 255)], [(8, 268)], [(260, 20)], [(250, 140)],
                                     [(8, 20), (255, 255), (250, 140)]])
@pytest.mark.parametrize("diameter", [5, 14])
def test_stray_marks_away_from_the_glyph_are_left_out(reference, centres, diameter, monkeypatch):
    """A tap of the pen or a speck far from the glyph does not shrink it."""
    data = _ink_png(_with_dots(INK, centres, diameter))
    assert np.abs(preprocess(data) - reference).max() < 0.05
    # Where every piece joins (no piece is too small), the dot shrinks the glyph.
    monkeypatch.setattr(P, "STRAY_MASS", 0.0)
    assert np.abs(preprocess(data) - reference).max() > 0.5


def test_glyph_box_keeps_the_dot_of_an_i_and_separate_strokes():
    def box(*rects: tuple[int, int, int, int], size: int = 70) -> tuple[int, int, int, int]:
        a = np.zeros((size, size), np.uint8)
        for x0, y0, x1, y1 in rects:
            a[y0:y1, x0:x1] = 255
        return P._glyph_box(a)[0]

    stem, dot = (30, 25, 34, 60), (30, 14, 34, 18)  # an 'i': the dot 0.2 of the stem above it
    assert box(stem, dot) == (30, 14, 34, 60)
    high_dot = (31, 2, 35, 6)  # 0.54 of the stem above, a little to the right
    assert box(stem, high_dot) == (30, 2, 35, 60)
    # The same dot above a wide or a round glyph is a stray mark; beside the
    # stem too, and below it (no character has its dot there).
    wide, round_ = (10, 40, 60, 60), (20, 25, 50, 60)
    assert box(wide, (33, 2, 37, 6)) == (10, 40, 60, 60)
    assert box(round_, (33, 2, 37, 6)) == (20, 25, 50, 60)
    assert box(stem, (40, 40, 44, 44)) == (30, 25, 34, 60)
    assert box((30, 2, 34, 40), (30, 56, 34, 60)) == (30, 2, 34, 40)
    # A 'j': hook and stem 0.6 as wide as tall, its dot above.
    assert box((20, 20, 41, 55), (37, 8, 41, 12)) == (20, 8, 41, 55)
    # A short stroke joins from farther than a dot does (the tail of a 'Q').
    body = (10, 10, 40, 40)
    assert box(body, (45, 36, 53, 39)) == (10, 10, 53, 40)
    assert box(body, (45, 20, 48, 23)) == (10, 10, 40, 40)
    # Two strokes of a character drawn apart both hold ink enough to stay.
    assert box((10, 10, 14, 60), (40, 10, 44, 60)) == (10, 10, 44, 60)
    # Pieces joining through another piece: chained, not only each to the first.
    assert box((10, 30, 30, 34), (34, 30, 40, 32), (46, 30, 52, 32)) == (10, 30, 52, 34)
    # One piece: the plain bounding box.
    assert box((5, 6, 50, 20)) == (5, 6, 50, 20)
    with pytest.raises(BlankImage):
        box()


def test_stray_marks_only_dots_still_blank():
    with pytest.raises(BlankImage):
        preprocess(_ink_png(_with_dots(np.zeros((280, 280), np.float32), [(140, 140)], 12)))


def _dotted(segments, diameter: float, spacing: float, size: int = 280) -> np.ndarray:
    """Discs stamped every ``spacing`` px along polyline ``segments``: a client
    drawing a disc at each pointer event, the pen moving fast."""
    im = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(im)
    r = diameter / 2
    for (xa, ya), (xb, yb) in segments:
        n = max(1, round(math.hypot(xb - xa, yb - ya) / spacing))
        for t in np.linspace(0, 1, n + 1):
            x, y = xa + t * (xb - xa), ya + t * (yb - ya)
            d.ellipse([x - r, y - r, x + r, y + r], fill=255)
    return np.asarray(im, np.float32) / 255


# The strokes of INK's 'F' on the 280 px canvas.
_F = [((75, 210), (75, 50)), ((75, 50), (175, 50)), ((75, 130), (150, 130))]


@pytest.mark.parametrize(("diameter", "spacing"), [(20, 1.6), (14, 2.5), (8, 4.0)])
def test_dotted_strokes_are_joined(reference, diameter, spacing, monkeypatch):
    """A stroke drawn as a row of separate dots comes out as a stroke."""
    data = _ink_png(_dotted(_F, diameter, diameter * spacing))
    corr = np.corrcoef(preprocess(data).ravel(), reference.ravel())[0, 1]
    assert corr > 0.85
    monkeypatch.setattr(P, "DOT_PIECES", 0)
    assert np.corrcoef(preprocess(data).ravel(), reference.ravel())[0, 1] < corr - 0.1


def _like(data: bytes, segments, diameter: float) -> float:
    """Correlation of a drawing's preprocessed image with that of the same
    strokes drawn whole (the same discs, stamped every pixel)."""
    whole = preprocess(_ink_png(_dotted(segments, diameter, 1.0)))
    return float(np.corrcoef(preprocess(data).ravel(), whole.ravel())[0, 1])


def _scaled(segments, f: float):
    return [tuple((140 + (x - 140) * f, 140 + (y - 140) * f) for x, y in seg) for seg in segments]


def test_dots_too_close_to_part_on_the_first_look_are_joined(monkeypatch):
    """Dots whose gaps close in the reduced canvas (it holds fewer than
    DOT_PIECES pieces) but not in the work image are joined too: the work
    image's Euler number finds them."""
    segments = _scaled(_F, 0.7)
    data = _ink_png(_dotted(segments, 8, 8 * 1.4))
    small = np.asarray(P._decode_u8(data, P.MAX_PIXELS).reduce(P._REDUCE))
    assert P._glyph_box(small)[1] < P.DOT_PIECES
    joined = _like(data, segments, 8)
    assert joined > 0.95
    monkeypatch.setattr(P, "_euler_number", lambda a, level=0.5: 0)
    assert _like(data, segments, 8) < joined - 0.05


def test_a_dotted_x_keeps_its_arms(monkeypatch):
    """Widely spaced dots are pieces apart in the reduced canvas, each a stray
    mark by itself; grouped into strokes they are kept, not only the dots
    that touch where the strokes cross."""
    segments = [((80, 50), (200, 230)), ((200, 50), (80, 230))]
    data = _ink_png(_dotted(segments, 12, 12 * 2.5))
    assert _like(data, segments, 12) > 0.95
    monkeypatch.setattr(P, "DOT_MAX_PIECES", 0)
    assert _like(data, segments, 12) < 0.5


@pytest.mark.parametrize("compiled", [True, False], ids=["compiled", "numpy"])
def test_euler_number_is_pieces_less_holes(compiled, monkeypatch):
    from scipy import ndimage

    if not compiled:
        monkeypatch.setattr(P, "_euler", None)
    elif P._euler is None:
        pytest.skip("worker._euler is not built (no C compiler at install)")
    rng = np.random.default_rng(0)
    for _ in range(300):
        h, w = rng.integers(1, 40, size=2)
        a = ndimage.gaussian_filter(rng.random((h, w)), rng.uniform(0.5, 2.0)).astype(np.float32)
        a = (a - a.min()) / max(float(a.max() - a.min()), 1e-6)
        level = float(rng.uniform(0.3, 0.7))
        on = a >= level
        pieces = ndimage.label(on, structure=np.ones((3, 3)))[1]
        holes = ndimage.label(~np.pad(on, 1))[1] - 1  # 4-connected background, less the outside
        assert P._euler_number(a, level) == pieces - holes
    # A view that is not C-contiguous takes the numpy code: the same count.
    assert P._euler_number(a.T, level) == pieces - holes


def test_euler_number_is_compiled_where_a_compiler_is():
    if not compiler_found():
        pytest.skip("no C compiler on this machine: the numpy code serves")
    assert P._euler is not None, "worker._euler was not built: reinstall (pip install -e .) and read the compiler's error"
    with pytest.raises(ValueError):
        P._euler.euler_number(np.zeros((4, 4), np.float32), 5, 4, 0.5)


def test_a_dotted_ring_is_closed(monkeypatch):
    """The dots of an 'O' join all the way round (a tree through them alone
    would leave it open), and not across it."""
    from scipy import ndimage

    k = np.linspace(0, 2 * np.pi, 25)
    ring = list(zip(zip(140 + 80 * np.cos(k[:-1]), 140 + 100 * np.sin(k[:-1])),
                    zip(140 + 80 * np.cos(k[1:]), 140 + 100 * np.sin(k[1:]))))
    data = _ink_png(_dotted(ring, 8, 24))

    def closed() -> bool:
        out = preprocess(data)
        inside = ndimage.label(out < 0.3)[0]
        return inside[14, 14] != 0 and inside[14, 14] != inside[0, 0] and out[14, 14] < 0.1

    assert closed()
    monkeypatch.setattr(P, "DOT_LOOP_HOPS", 1000)
    assert not closed()


# --------------------------------------------------------------------------- outlined strokes


def _outlined(ink: np.ndarray, line: float) -> np.ndarray:
    """A drawing less its inside: outlined ``line`` px wide, as a hollow brush draws it."""
    from scipy import ndimage

    k = int(math.ceil(line))
    yy, xx = np.mgrid[-k:k + 1, -k:k + 1]
    return np.clip(ink - ndimage.grey_erosion(ink, footprint=yy**2 + xx**2 <= line**2), 0, 1)


def _drawn(shapes, width: int) -> np.ndarray:
    """Ellipses ``("ellipse", box)``, rounded rectangles ``("rounded", box +
    (radius,))`` and polylines ``("line", points)`` drawn with a pen
    ``width`` px wide, anti-aliased (drawn 4x larger)."""
    big = Image.new("L", (280 * 4, 280 * 4), 0)
    d = ImageDraw.Draw(big)
    for kind, xy in shapes:
        if kind == "ellipse":
            d.ellipse([v * 4 for v in xy], outline=255, width=width * 4)
        elif kind == "rounded":  # (x0, y0, x1, y1, radius)
            d.rounded_rectangle([v * 4 for v in xy[:4]], radius=xy[4] * 4, outline=255, width=width * 4)
        else:
            d.line([(x * 4, y * 4) for x, y in xy], fill=255, width=width * 4, joint="curve")
    return np.asarray(big.reduce(4), np.float32) / 255


@pytest.mark.parametrize("line", [1.5, 2, 3])
def test_an_outlined_glyph_comes_out_as_drawn_whole(line, monkeypatch):
    """An 'F' drawn with a fat pen (24 px on 280) and outlined: its strokes' insides are filled."""
    solid = _drawn([("line", [(100, 250), (100, 40), (200, 40)]), ("line", [(100, 140), (180, 140)])], 24)
    reference = preprocess(_ink_png(solid))
    data = _ink_png(_outlined(solid, line))

    def like() -> float:
        return float(np.corrcoef(preprocess(data).ravel(), reference.ravel())[0, 1])

    assert like() > 0.97
    monkeypatch.setattr(P, "HOLLOW_WIDTH", 0.0)
    assert like() < 0.93


@pytest.mark.parametrize(("shapes", "width"), [
    ([("ellipse", (60, 40, 220, 240))], 3),
    ([("ellipse", (110, 30, 170, 250))], 5),  # a '0' almost four times as tall as wide
    ([("line", [(60, 250), (140, 30), (220, 250)]), ("line", [(95, 160), (185, 160)])], 3),
    ([("line", [(80, 30), (80, 250)]), ("ellipse", (40, 30, 200, 140)), ("ellipse", (40, 140, 210, 250))], 3),
    ([("ellipse", (70, 40, 210, 140)), ("line", [(210, 90), (200, 250), (90, 240)])], 3),
], ids=["O", "narrow 0", "A", "B-like", "g-like"])
def test_a_letters_counters_are_not_filled(shapes, width, monkeypatch):
    """Drawn with a thin pen, so the rule looks at them: they are left as they are."""
    data = _ink_png(_drawn(shapes, width))
    left = []
    original = P._filled_outlines

    def spy(a: np.ndarray, long_px: int) -> np.ndarray:
        out = original(a, long_px)
        left.append(out is a)
        return out

    monkeypatch.setattr(P, "_filled_outlines", spy)
    preprocess(data)
    assert left == [True]


# --------------------------------------------------------------------------- page lines


def _lined_page(rows: bool, columns: bool, colour, width: int, every: int = 28, offset: int = 9) -> np.ndarray:
    """Paper with printed lines ``width`` px wide (ruled: rows; squared: both) every ``every`` px."""
    page = np.full((280, 280, 3), 250, np.float32)
    for k in range(width):
        if rows:
            page[offset + k::every] = colour
        if columns:
            page[:, offset + k::every] = colour
    return page


@pytest.mark.parametrize(("rows", "columns", "colour", "width", "offset"), [
    (True, False, (120, 120, 120), 2, 9), (False, True, (150, 180, 230), 1, 9), (True, True, (150, 180, 230), 1, 9),
    (True, True, (120, 120, 120), 1, 9), (True, True, (190, 200, 235), 2, 9), (True, True, (150, 150, 150), 1, 0),
    (True, True, (180, 190, 230), 2, 27)],
    ids=["ruled, grey", "columns", "squared", "squared, grey", "squared, 2 px", "squared, cut through its lines",
         "squared, 2 px, cut through its lines"])
def test_the_lines_of_ruled_or_squared_paper_are_not_ink(reference, rows, columns, colour, width, offset, monkeypatch):
    """Cut through its lines, the page's border is mostly line (the top row and
    the left column here): the lines go before the frame rule clears the ink
    along the edge, which the character crosses."""
    data = png(Image.fromarray(_compose([30, 30, 40], _lined_page(rows, columns, colour, width, offset=offset))))

    def like() -> float:
        try:
            return float(np.corrcoef(preprocess(data).ravel(), reference.ravel())[0, 1])
        except BlankImage:
            return 0.0

    assert like() > 0.99
    monkeypatch.setattr(P, "LINE_SPAN", 2.0)  # no row is ever that full
    assert like() < 0.9


def test_a_pen_stroke_across_the_page_is_not_a_page_line(monkeypatch):
    """A stroke as strong as the pen, from edge to edge, is the character's."""
    ink = np.zeros((280, 280), np.float32)
    ink[40:56, :] = 1.0  # the bar of a 'T' drawn off both edges
    ink[56:250, 132:148] = 1.0
    data = png(Image.fromarray(np.round(250 - 220 * ink).astype(np.uint8), "L"))
    assert P._lined(np.asarray(P._decode_u8(data, P.MAX_PIXELS).reduce(P._REDUCE)))
    out = preprocess(data)
    assert out[:10].max(axis=1).max() > 0.9  # the bar, at full strength
    monkeypatch.setattr(P, "LINE_SPAN", 2.0)
    assert np.array_equal(preprocess(data), out)


def _tilted_page(degrees: float, columns: bool, colour, every: int = 28) -> np.ndarray:
    """Paper with anti-aliased 1 px lines every ``every`` px, turned by ``degrees``
    (a photographed page): drawn 4x larger, turned, reduced."""
    big = np.full((280 * 4, 280 * 4), 255, np.uint8)
    for k in range(4):
        big[20 + k::every * 4] = 0
        if columns:
            big[:, 20 + k::every * 4] = 0
    line = 1 - np.asarray(Image.fromarray(big).rotate(degrees, Image.BICUBIC, fillcolor=255)
                          .reduce(4), np.float32)[..., None] / 255
    return 250 * (1 - line) + np.asarray(colour, np.float32) * line


@pytest.mark.parametrize(("degrees", "columns", "colour"), [
    (2, False, (150, 180, 230)), (-4, False, (120, 120, 120)), (1.5, True, (150, 180, 230)),
    (-3, True, (140, 140, 140))], ids=["ruled, 2 degrees", "ruled grey, -4 degrees", "squared, 1.5 degrees",
                                       "squared grey, -3 degrees"])
def test_the_lines_of_a_page_turned_a_little_are_not_ink(reference, degrees, columns, colour, monkeypatch):
    """Turned by a few degrees, a page line crosses rows of pixels, none of them
    full, so it is found on the page sheared level."""
    data = png(Image.fromarray(_compose([30, 30, 40], _tilted_page(degrees, columns, colour))))

    def off() -> float:  # the most any pixel is off the glyph drawn on a blank page
        return float(np.abs(preprocess(data) - reference).max())

    assert off() < 0.1
    monkeypatch.setattr(P, "LINE_TILT", 0.0)  # level lines only
    assert off() > 0.2


# --------------------------------------------------------------------------- printed boxes


def _boxed(ink: np.ndarray, boxes, width: int, level: float = 1.0) -> np.ndarray:
    """The ink map in printed rectangles ``(x0, y0, x1, y1)`` with lines ``width`` px wide at ``level``."""
    im = Image.new("L", ink.shape[::-1], 0)
    for box in boxes:
        ImageDraw.Draw(im).rectangle(box, outline=round(255 * level), width=width)
    return np.maximum(ink, np.asarray(im, np.float32) / 255)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


@pytest.mark.parametrize(("boxes", "width", "level"), [
    ([(50, 30, 210, 240)], 2, 1.0), ([(60, 35, 200, 230)], 1, 1.0), ([(40, 20, 230, 250)], 4, 1.0),
    ([(50, 30, 210, 240)], 2, 0.6), ([(60, 30, 190, 195)], 2, 1.0),
    ([(-120, 30, 40, 240), (50, 30, 210, 240), (220, 30, 380, 240)], 2, 1.0),
    ([(x, 30, x + 159, 240) for x in (-270, -110, 50, 210)], 2, 1.0),
    ([(x, 30, x + 160, 240) for x in (-310, -130, 50, 230)], 2, 1.0)],
    ids=["2 px", "1 px", "4 px", "grey", "a stroke crossing it", "a row of boxes 10 px apart",
         "a row of boxes side by side", "a row of boxes 20 px apart"])
def test_a_printed_box_around_a_character_is_not_ink(reference, boxes, width, level, monkeypatch):
    """A form's box around the 'F' (in a row of them: the lines between the
    cells too) is cleared; the F's stem, where it crosses the box's bottom
    line, keeps its ink."""
    data = _ink_png(_boxed(INK, boxes, width, level))
    assert _correlation(preprocess(data), reference) > 0.97
    monkeypatch.setattr(P, "BOX_SIDE", 0)
    assert _correlation(preprocess(data), reference) < 0.9


@pytest.mark.parametrize(("rectangle", "shapes"), [
    ((80, 40, 200, 240), []),
    ((80, 40, 200, 240), [("line", [(80, 140), (200, 140)])]),
    (None, [("ellipse", (60, 30, 220, 250)), ("line", [(150, 190), (230, 260)])]),
    (None, [("rounded", (80, 40, 200, 240, 20)), ("line", [(150, 190), (230, 260)])]),
], ids=["0 drawn as a rectangle", "8 drawn as a rectangle and a bar", "Q, round", "Q, round at the corners"])
def test_a_glyph_drawn_with_straight_lines_is_not_a_box(rectangle, shapes, monkeypatch):
    """A rectangle with nothing inside is an 'O' or a '0'; with a bar across,
    an '8' or a 'B'. A 'Q' has no square corners. They come out as they do
    with no rule for boxes."""
    for width in (3, 8):
        ink = _drawn(shapes, width)
        data = _ink_png(_boxed(ink, [rectangle], width) if rectangle else ink)
        with monkeypatch.context() as m:
            m.setattr(P, "BOX_SIDE", 0)
            without = preprocess(data)
        assert np.array_equal(preprocess(data), without)


def test_the_middle_of_a_fat_stroke_is_not_a_box_line(monkeypatch):
    """A fat '0' with square shoulders and a slanted hole: rows through the
    middle of its strokes are inked from side to side like a box's lines,
    but so are the rows beside them. It comes out as with no rule for boxes."""
    im = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(im).rounded_rectangle([50, 20, 230, 260], radius=70, fill=255)
    hole = Image.new("L", (280, 280), 0)
    ImageDraw.Draw(hole).ellipse([120, 60, 160, 220], fill=255)
    ink = np.minimum(np.asarray(im), 255 - np.asarray(hole.rotate(35, Image.BILINEAR))).astype(np.float32) / 255
    data = _ink_png(ink)
    with monkeypatch.context() as m:
        m.setattr(P, "BOX_SIDE", 0)
        without = preprocess(data)
    assert np.array_equal(preprocess(data), without)


def test_a_one_drawn_with_a_ruler_in_a_box_stays():
    """A straight line from side to side of a box is a line between cells
    only where there is other ink beside it: alone, it is the character."""
    one = _drawn([("line", [(140, 40), (140, 240)])], 3)
    reference = preprocess(_ink_png(one))
    assert _correlation(preprocess(_ink_png(_boxed(one, [(80, 40, 200, 240)], 3))), reference) > 0.97


def test_a_box_line_that_steps_by_a_pixel_goes_whole(reference):
    """A box whose top line steps down a pixel halfway (a scan's, or one
    turned level in whole pixels): no row is inked along all of it, and the
    pixel left beside the cleared row goes with it."""
    box = np.zeros((280, 280), np.float32)
    box[30:32, 50:130], box[31:33, 130:211], box[238:240, 50:211] = 1, 1, 1
    box[30:240, 50:52], box[30:240, 209:211] = 1, 1
    assert _correlation(preprocess(_ink_png(np.maximum(INK, box))), reference) > 0.97


def _turned(ink: np.ndarray, degrees: float) -> np.ndarray:
    """The ink map turned about its centre, as a page scanned or cut crooked."""
    im = Image.fromarray(np.round(ink * 255).astype(np.uint8)).resize((280 * 4, 280 * 4), Image.BILINEAR)
    return np.asarray(im.rotate(degrees, Image.BILINEAR).reduce(4), np.float32) / 255


@pytest.mark.parametrize(("boxes", "degrees"), [
    ([(50, 30, 210, 240)], 1.5), ([(50, 30, 210, 240)], -2), ([(50, 30, 210, 240)], 3.5),
    ([(x, 30, x + 159, 240) for x in (-270, -110, 50, 210)], 1.5),
    ([(-120, 30, 40, 240), (50, 30, 210, 240), (220, 30, 380, 240)], -1)],
    ids=["1.5 degrees", "-2 degrees", "3.5 degrees", "a row of boxes side by side", "a row of boxes 10 px apart"])
def test_a_turned_printed_box_is_not_ink(reference, boxes, degrees, monkeypatch):
    """A page turned a little (the 'F' in its box, 2 px lines): the box is
    found at its slope and cleared, the page turned level with it."""
    data = _ink_png(_turned(_boxed(INK, boxes, 2), degrees))
    assert _correlation(preprocess(data), reference) > 0.97
    monkeypatch.setattr(P, "BOX_TILT", 0)
    assert _correlation(preprocess(data), reference) < 0.9


@pytest.mark.parametrize("bar", [False, True], ids=["0 drawn as a rectangle", "8 drawn as a rectangle and a bar"])
def test_a_turned_rectangle_drawn_as_a_glyph_stays(bar, monkeypatch):
    """Turned, a rectangle with nothing inside or with a bar across it is
    still a glyph: it comes out as with no rule for boxes."""
    for width in (3, 8):
        ink = _boxed(_drawn([("line", [(80, 140), (200, 140)])] if bar else [], width), [(80, 40, 200, 240)], width)
        data = _ink_png(_turned(ink, 2))
        with monkeypatch.context() as m:
            m.setattr(P, "BOX_SIDE", 0)
            without = preprocess(data)
        assert np.array_equal(preprocess(data), without)


def test_level_brings_lines_of_a_slope_level_and_upright():
    """``_level`` turns in whole pixels: a line of slope t lies along one row
    afterwards, a line square to it within two columns (rounded twice, it
    wavers by a pixel)."""
    a = np.zeros((200, 200), np.uint8)
    x = np.arange(20, 180)
    a[np.round(30 + 0.04 * x).astype(int), x] = 255  # a line going down to the right
    a[x, np.round(40 - 0.04 * x).astype(int)] = 255  # and one square to it
    b = P._level(a, 0.04)
    assert np.count_nonzero(b, axis=1).max() >= 155
    columns = np.count_nonzero(b, axis=0)
    assert (columns[1:] + columns[:-1]).max() >= 155


def test_a_curve_is_not_a_straight_edge():
    x = np.arange(100)
    assert P._straight_edge(np.round(50 + 0.03 * x).astype(np.intp)) == pytest.approx(0.03, abs=0.002)
    assert P._straight_edge(np.round(0.01 * (x - 50) ** 2).astype(np.intp)) is None


# --------------------------------------------------------------------------- uneven light


def _shaded_pages() -> dict[str, bytes]:
    """The 'F' in dark ink on paper photographed under uneven light."""
    yy, xx = np.mgrid[:280, :280].astype(np.float32)
    paper = {
        "gradient": 250 - 120 * xx / 279,
        "vignette": 245 - 70 * (np.hypot(yy - 140, xx - 140) / 198) ** 2,
        "shadow corner": 240 - 80 * np.clip(1 - np.hypot(yy, xx) / 250, 0, 1),
    }
    out = {}
    for name, p in paper.items():
        page = p * (1 - INK) + 25 * INK
        grey = np.clip(np.round(page), 0, 255).astype(np.uint8)
        out[f"{name} L"] = png(Image.fromarray(grey, "L"))
        tint = np.dstack([grey, np.clip(grey * 0.97, 0, 255), np.clip(grey * 0.9, 0, 255)]).astype(np.uint8)
        out[f"{name} RGB JPEG"] = png(Image.fromarray(tint, "RGB"), "JPEG", quality=85)
    return out


SHADED = _shaded_pages()


@pytest.mark.parametrize("name", sorted(SHADED))
def test_uneven_light_is_taken_away(reference, name, monkeypatch):
    """The glyph comes out as on an even page; without the correction the
    page's shade reads as ink and the glyph is lost in it."""
    corr = np.corrcoef(preprocess(SHADED[name]).ravel(), reference.ravel())[0, 1]
    assert corr > 0.9, corr
    monkeypatch.setattr(P, "_SHADE_U8", 256)
    try:
        uncorrected = np.corrcoef(preprocess(SHADED[name]).ravel(), reference.ravel())[0, 1]
    except BlankImage:
        uncorrected = 0.0
    assert uncorrected < corr - 0.1, (uncorrected, corr)


def test_uneven_light_leaves_thick_strokes_whole():
    """A marker's strokes can fill most of the window the shade is estimated
    over; they are left out of the estimate, so they are not taken for shade."""
    big = Image.new("L", (1120, 1120), 0)
    d = ImageDraw.Draw(big)
    w = int(1120 * 0.12)
    d.line([(300, 840), (300, 200), (760, 200)], fill=255, width=w, joint="curve")
    d.line([(300, 520), (640, 520)], fill=255, width=w)
    ink = np.asarray(big.resize((280, 280), Image.BOX), dtype=np.float32) / 255
    xx = np.arange(280, dtype=np.float32)[None, :]
    page = np.round((250 - 120 * xx / 279) * (1 - ink) + 20 * ink).astype(np.uint8)
    a, b = preprocess(_ink_png(ink)), preprocess(png(Image.fromarray(page, "L")))
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.95


@pytest.mark.parametrize("name", sorted(VARIANTS))
def test_even_pages_whose_border_is_the_page_are_left_alone(name, monkeypatch):
    def never(_ink):
        raise AssertionError("an even page was treated as shaded, or its border as a frame")

    monkeypatch.setattr(P, "_without_shade", never)
    monkeypatch.setattr(P, "without_frame", never)
    preprocess(VARIANTS[name])


def _framed_pages() -> dict[str, bytes]:
    """The glyph on pages whose border is not the page: a frame drawn along the
    edge (grey, coloured, on a transparent canvas) and a sheet photographed
    with the desk around it."""
    page = np.round(250 * (1 - INK) + 20 * INK).astype(np.uint8)
    out = {}
    framed = page.copy()
    framed[:4], framed[-4:], framed[:, :4], framed[:, -4:] = 20, 20, 20, 20
    out["L black frame"] = png(Image.fromarray(framed, "L"))
    rgb = np.dstack([page] * 3)
    red = (200, 30, 30)
    rgb[:6], rgb[-6:], rgb[:, :6], rgb[:, -6:] = red, red, red, red
    out["RGB red frame"] = png(Image.fromarray(rgb, "RGB"))
    alpha = np.round(255 * INK).astype(np.uint8)
    alpha[:3], alpha[-3:], alpha[:, :3], alpha[:, -3:] = 255, 255, 255, 255
    black = np.zeros((280, 280, 3), np.uint8)
    out["RGBA frame on transparent"] = png(Image.fromarray(np.dstack([black, alpha]), "RGBA"))
    desk = np.pad(page, 24, constant_values=70)
    out["L sheet on a desk, JPEG"] = png(Image.fromarray(desk, "L").convert("RGB"), "JPEG", quality=85)
    return out


FRAMED = _framed_pages()


@pytest.mark.parametrize("name", sorted(FRAMED))
def test_a_frame_along_the_border_is_not_the_page(reference, name, monkeypatch):
    """The page is the colour most of the canvas has: a frame or a desk along
    the border is neither the background nor part of the glyph. Taking the
    border's colour for the page instead loses the glyph."""
    out = preprocess(FRAMED[name])
    assert np.corrcoef(out.ravel(), reference.ravel())[0, 1] > 0.97
    monkeypatch.setattr(P, "PAGE_SHARE", 1.0)
    try:
        border_taken = np.corrcoef(preprocess(FRAMED[name]).ravel(), reference.ravel())[0, 1]
    except BlankImage:
        border_taken = 0.0
    assert border_taken < 0.8


def test_to_emnist_rejects_bad_shapes():
    with pytest.raises(BlankImage):
        to_emnist(np.zeros((0, 0), np.float32))
    with pytest.raises(BlankImage):
        to_emnist(np.zeros((50, 50), np.float32))


def test_to_emnist_on_an_emnist_image_is_near_identity(emnist_dir):
    X, _ = load_split(emnist_dir, "test")
    a = X[:200].astype(np.float32) / 255
    big = [np.asarray(Image.fromarray(x).resize((112, 112), Image.BICUBIC), np.float32) / 255 for x in X[:200]]
    out = np.stack([to_emnist(b) for b in big])
    corr = [np.corrcoef(o.ravel(), r.ravel())[0, 1] for o, r in zip(out, a)]
    # Not exact: stroke width is normalised and faint strokes get full contrast.
    assert np.median(corr) > 0.85


# --------------------------------------------------------------------------- statistics


def _stats(A: np.ndarray) -> dict[str, float]:
    ink = A > 0.1
    rows, cols = ink.any(2), ink.any(1)
    h = 28 - rows.argmax(1) - rows[:, ::-1].argmax(1)
    w = 28 - cols.argmax(1) - cols[:, ::-1].argmax(1)
    yy, xx = np.mgrid[:28, :28]
    m = A.sum((1, 2))
    gy = np.diff(A, axis=1)[:, :, :-1]
    gx = np.diff(A, axis=2)[:, :-1, :]
    sw = 2 * A.sum((1, 2)) / np.sqrt(gx**2 + gy**2).sum((1, 2))
    return {
        "extent": float(np.median(np.maximum(h, w))),
        "com_y": float(np.median((A * yy).sum((1, 2)) / m)),
        "com_x": float(np.median((A * xx).sum((1, 2)) / m)),
        "mean": float(A.mean()),
        "stroke": float(np.median(sw)),
        "solid": float((A > 0.5).mean()),
    }


@pytest.fixture(scope="module")
def rendered(emnist_dir):
    X, _ = load_split(emnist_dir, "test")
    rng = np.random.default_rng(7)
    idx = rng.choice(len(X), 300, replace=False)
    raw = X[idx].astype(np.float32) / 255
    canvas = np.stack([preprocess(render_canvas(x, rng)) for x in X[idx]])
    pen = np.stack([preprocess(render_pen(x, rng)) for x in X[idx]])
    return raw, canvas, pen


@pytest.mark.parametrize("kind", ["canvas", "pen"])
def test_preprocessed_renderings_match_training_statistics(rendered, kind):
    raw, canvas, pen = rendered
    r, o = _stats(raw), _stats(canvas if kind == "canvas" else pen)
    # Measured on these EMNIST images: long side 24 px, centre of mass about
    # (13.6, 13.4), mean intensity 0.18, stroke 2.9 px; preprocessed renderings
    # measured 24 / (13.6, 13.3) / 0.20 / 3.2 (canvas), 24 / (13.5, 13.4) / 0.17 / 2.5 (pen).
    assert r["extent"] == 24 and o["extent"] == 24
    assert abs(o["com_y"] - r["com_y"]) < 0.5 and abs(o["com_x"] - r["com_x"]) < 0.5
    assert abs(o["mean"] - r["mean"]) / r["mean"] < 0.15
    # Stroke width is kept within the training range, not erased: the median
    # follows the renderer's pens but stays within half a pixel.
    assert abs(o["stroke"] - r["stroke"]) < 0.5
    assert abs(o["solid"] - r["solid"]) / r["solid"] < 0.2


def test_pen_width_is_brought_into_the_training_range(emnist_dir):
    """Thin and thick pens come out within the training images' p10..p90 stroke
    range (2.2..4.0 px), thin still thinner than thick."""
    X, _ = load_split(emnist_dir, "test")
    widths = {}
    for wf in (0.025, 0.07):
        rng = np.random.default_rng(3)
        out = np.stack([preprocess(render_pen(x, rng, wf)) for x in X[:60]])
        widths[wf] = _stats(out)["stroke"]
    assert 1.9 < widths[0.025] < widths[0.07] < 4.2, widths


def test_accepted_formats_constant():
    assert "PNG" in ACCEPTED_FORMATS and "TIFF" not in ACCEPTED_FORMATS


def test_preprocess_is_cheap():
    """Generous bound for a shared CI machine; the measured figure is ~0.1-0.2 ms."""
    data = VARIANTS["RGBA transparent"]
    preprocess(data)
    t = time.perf_counter()
    for _ in range(100):
        preprocess(data)
    assert (time.perf_counter() - t) / 100 < 0.01
