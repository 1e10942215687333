"""worker.fastpng.ink_u8_fast: the fast path must equal the Pillow path.

Every test runs twice: with the compiled loops (``worker._fastpng``) and with
their fallback (libspng and numpy), which serves where no C compiler was found.

Equality is asserted *exactly* (every pixel of the ink image): both paths get
the same uint8 pixels (libspng without gamma, Pillow without conversion for
these 8-bit colour types) and compute the ink with the same integer arithmetic
(alpha copied; |v - bg| in uint8 with bg = int(median(border)), max over
channels). There is no rounding step on either side, so no tolerance is needed;
the 28x28 output of ``_to_emnist_u8`` is then checked to agree within 1/255
(it is in fact identical, as its input is).
"""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
import pyspng  # noqa: F401  (a dependency: missing, these tests must fail, not skip)
import pytest
from PIL import Image

from inkq.errors import BlankImage, ImageTooLarge, ItemError
from tests.conftest import compiler_found
from tests.hostile import chunk as _chunk
from tests.hostile import png as _png
from worker import fastpng as F
from worker import preprocess as P
from worker.fastpng import ink_u8_fast

M = P.MAX_PIXELS
COMPILED = F._compiled


@pytest.fixture(autouse=True, params=["compiled", "fallback"])
def backend(request, monkeypatch):
    """Run the test with the compiled loops, then with libspng and numpy."""
    if request.param == "compiled":
        if COMPILED is None:
            pytest.skip("worker._fastpng is not built (no C compiler at install)")
    else:
        monkeypatch.setattr(F, "_compiled", None)
    return request.param


def test_compiled_loops_are_built_where_a_compiler_is():
    if not compiler_found():
        pytest.skip("no C compiler on this machine: the fallback serves")
    assert COMPILED is not None, "worker._fastpng was not built: reinstall (pip install -e .) and read the compiler's error"


# --------------------------------------------------------------------------- helpers


def _ihdr(w: int, h: int, depth: int = 8, ctype: int = 2, interlace: int = 0) -> bytes:
    return _chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, depth, ctype, 0, 0, interlace))


SIG = b"\x89PNG\r\n\x1a\n"


def _chunks(png: bytes) -> list[tuple[bytes, bytes]]:
    out, pos = [], 8
    while pos < len(png):
        n, cid = struct.unpack_from(">I4s", png, pos)
        out.append((cid, png[pos + 8 : pos + 8 + n]))
        pos += 12 + n
    return out


def _rebuild(chunks: list[tuple[bytes, bytes]]) -> bytes:
    return SIG + b"".join(_chunk(c, b) for c, b in chunks)


def _insert_before_idat(png: bytes, cid: bytes, body: bytes) -> bytes:
    ch = _chunks(png)
    i = next(k for k, (c, _) in enumerate(ch) if c == b"IDAT")
    return _rebuild(ch[:i] + [(cid, body)] + ch[i:])


def _with_scanlines(w: int, h: int, rows: list[bytes]) -> bytes:
    """An RGB PNG of IHDR size w x h whose IDAT holds ``rows`` (any number)."""
    return SIG + _ihdr(w, h, 8, 2) + _chunk(b"IDAT", zlib.compress(b"".join(rows))) + _chunk(b"IEND", b"")


def _assert_same(data: bytes) -> Image.Image:
    """The fast path handles ``data`` and equals the Pillow path, pixel for pixel."""
    fast = ink_u8_fast(data, M)
    assert fast is not None
    ref = P._decode_u8(data, M)
    assert fast.mode == ref.mode == "L"
    assert fast.size == ref.size
    a, b = np.asarray(fast), np.asarray(ref)
    assert np.array_equal(a, b), f"max abs diff {np.abs(a.astype(int) - b).max()}"
    try:
        e_ref = P._to_emnist_u8(ref)
    except BlankImage:
        with pytest.raises(BlankImage):
            P._to_emnist_u8(fast)
    else:
        e_fast = P._to_emnist_u8(fast)
        assert e_fast.shape == (28, 28)
        assert np.abs(e_fast - e_ref).max() <= 1 / 255
    return fast


def _equal_or_none(data: bytes) -> None:
    """Never raises; when it answers, the Pillow path must succeed with the same image."""
    fast = ink_u8_fast(data, M)
    if fast is None:
        return
    ref = P._decode_u8(data, M)  # must not raise: the fast path only takes what Pillow takes
    assert np.array_equal(np.asarray(fast), np.asarray(ref))


# --------------------------------------------------------------------------- (a) equality


@pytest.fixture(scope="module")
def glyphs(emnist_dir) -> np.ndarray:
    from worker.emnist import load_split

    X, _ = load_split(emnist_dir, "test")
    rng = np.random.default_rng(7)
    return X[rng.choice(len(X), size=400, replace=False)]


@pytest.mark.parametrize("style", ["transparent", "white", "dark", "colour"])
def test_render_canvas_styles_equal(glyphs, style):
    from worker.render import render_canvas

    rng = np.random.default_rng(["transparent", "white", "dark", "colour"].index(style))
    for img in glyphs[:80]:
        _assert_same(render_canvas(img, rng, style))


def test_render_pen_equal(glyphs):
    from worker.render import render_pen

    rng = np.random.default_rng(11)
    for img in glyphs[80:140]:
        _assert_same(render_pen(img, rng))


def test_framed_pages_equal(glyphs):
    """A frame along the border (the page colour then comes from the whole
    canvas and the frame is cleared): the same ink map on both paths."""
    from worker.render import pen_ink

    rng = np.random.default_rng(12)
    for img in glyphs[140:170]:
        page = np.round(255 * (1 - pen_ink(img, rng, 0.04))).astype(np.uint8)
        k = int(rng.integers(2, 8))
        frame = rng.integers(0, 120, 3).astype(np.uint8)
        rgb = np.dstack([page] * 3)
        rgb[:k], rgb[-k:], rgb[:, :k], rgb[:, -k:] = frame, frame, frame, frame
        for im in (Image.fromarray(rgb, "RGB"), Image.fromarray(rgb[..., 0], "L"),
                   Image.fromarray(np.dstack([rgb, np.full(page.shape, 255, np.uint8)]), "RGBA")):
            ink = np.asarray(_assert_same(_png(im)))
            assert not ink[:k].any() and not ink[:, -k:].any()  # the frame is gone
            assert ink.max() == 255  # the glyph is not


def _strokes(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A float [0, 1] ink map with a few anti-aliased strokes."""
    yy, xx = np.mgrid[0:h, 0:w]
    ink = np.zeros((h, w))
    for _ in range(3):
        cx, cy, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(2, max(3, min(h, w) / 3))
        ink = np.maximum(ink, np.clip(r + 0.5 - np.hypot(xx - cx, yy - cy), 0, 1) * (
            np.hypot(xx - cx, yy - cy) > r * 0.5))
    return ink


@pytest.mark.parametrize("size", [(64, 48), (37, 91), (5, 7), (1, 9), (9, 1), (1, 1), (2, 2)])
def test_hand_made_each_colour_type(size):
    h, w = size
    rng = np.random.default_rng(h * 1000 + w)
    for trial in range(6):
        ink = _strokes(h, w, rng)
        fg = rng.integers(0, 256, 3)
        bg = rng.integers(0, 256, 3)
        rgb = np.round(bg * (1 - ink[..., None]) + fg * ink[..., None]).astype(np.uint8)
        noise = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        g = rgb[..., 0]
        # Opaque RGB and grey (also pure noise: any background, any median).
        _assert_same(_png(Image.fromarray(rgb, "RGB")))
        _assert_same(_png(Image.fromarray(noise, "RGB")))
        _assert_same(_png(Image.fromarray(g, "L")))
        _assert_same(_png(Image.fromarray(noise[..., 1], "L")))
        # Alpha: transparent background (ink = alpha), and fully opaque alpha.
        alpha = np.round(ink * 255).astype(np.uint8)
        rgba = np.dstack([rgb, alpha])
        if 2 * np.count_nonzero(P._border(alpha)) < P._border(alpha).size:
            _assert_same(_png(Image.fromarray(rgba, "RGBA")))
            _assert_same(_png(Image.fromarray(np.dstack([g, alpha]), "LA")))
        opaque = np.full((h, w), 255, np.uint8)
        _assert_same(_png(Image.fromarray(np.dstack([rgb, opaque]), "RGBA")))
        _assert_same(_png(Image.fromarray(np.dstack([noise, opaque]), "RGBA")))
        _assert_same(_png(Image.fromarray(np.dstack([g, opaque]), "LA")))
        # Semi-transparent background: either handled identically or left to Pillow.
        semi = np.dstack([rgb, np.full((h, w), 128 + trial, np.uint8)])
        _equal_or_none(_png(Image.fromarray(semi, "RGBA")))
        _equal_or_none(_png(Image.fromarray(np.dstack([g, semi[..., 3]]), "LA")))


def test_benign_ancillary_chunks_and_compression_levels():
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    im = Image.fromarray(rgb, "RGB")
    for level in (0, 1, 6, 9):
        _assert_same(_png(im, compress_level=level))
    _assert_same(_png(im, dpi=(72, 72)))  # pHYs
    base = _png(im)
    _assert_same(_insert_before_idat(base, b"sRGB", b"\x00"))
    _assert_same(_insert_before_idat(base, b"gAMA", struct.pack(">I", 45455)))
    # Several IDAT chunks (browsers and big images split the stream).
    ch = _chunks(_png(im, compress_level=0))
    idat = next(b for c, b in ch if c == b"IDAT")
    parts = [(b"IDAT", idat[i : i + 500]) for i in range(0, len(idat), 500)]
    _assert_same(_rebuild([ch[0]] + parts + [(b"IEND", b"")]))


# --------------------------------------------------------------------------- (b) None cases


def _rgb_png(w: int = 20, h: int = 10) -> bytes:
    return _png(Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8)))


def _interlaced_1x1() -> bytes:
    # A 1x1 Adam7 image holds its pixel in pass 1 only, so its IDAT is the same
    # as a non-interlaced one: a genuine interlaced PNG (Pillow cannot write one).
    raw = b"\x00" + bytes([10, 200, 30])
    return SIG + _ihdr(1, 1, 8, 2, interlace=1) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")


def _chunk_end(png: bytes, cid: bytes) -> int:
    i = png.index(cid) - 4
    return i + 12 + struct.unpack_from(">I", png, i)[0]


def _bad_adler(png: bytes, *, fix_crc: bool) -> bytes:
    """The same PNG with the zlib stream's Adler-32 broken (deflate data intact)."""
    ch = _chunks(png)
    z = b"".join(b for c, b in ch if c == b"IDAT")
    z = z[:-4] + bytes([z[-4] ^ 1]) + z[-3:]
    out = _rebuild([ch[0], (b"IDAT", z), (b"IEND", b"")])
    if not fix_crc:
        out = bytearray(out)
        out[_chunk_end(bytes(out), b"IDAT") - 1] ^= 0x01
        out = bytes(out)
    return out


def _cases() -> dict[str, bytes]:
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)
    g = rgb[..., 0]
    base = _png(Image.fromarray(rgb, "RGB"))
    frames = [Image.fromarray(np.roll(rgb, k, axis=1), "RGB") for k in range(3)]
    buf = io.BytesIO()
    frames[0].save(buf, format="PNG", save_all=True, append_images=frames[1:], duration=50)
    apng = buf.getvalue()
    assert b"acTL" in apng
    jpg = io.BytesIO()
    Image.fromarray(rgb, "RGB").save(jpg, format="JPEG")
    raw_rows = [b"\x00" + row.tobytes() for row in rgb]  # filter 0 scanlines
    idat_at = base.index(b"IDAT")
    flipped = bytearray(base)
    flipped[idat_at + 10] ^= 0xFF  # corrupt deflate data (CRC left wrong too)
    bad_ihdr_crc = bytearray(base)
    bad_ihdr_crc[29] ^= 0x01
    bad_idat_crc = bytearray(base)
    bad_idat_crc[_chunk_end(base, b"IDAT") - 1] ^= 0x01
    bad_phys_crc = bytearray(_png(Image.fromarray(rgb, "RGB"), dpi=(96, 96)))
    p = bad_phys_crc.index(b"pHYs")
    bad_phys_crc[p + 4 + 9] ^= 0x01  # CRC of the pHYs chunk
    return {
        "palette": _png(Image.fromarray(rgb, "RGB").convert("P")),
        "palette_1bit": _png(Image.fromarray(g > 128)),
        "16bit_grey": _png(Image.fromarray(g.astype(np.uint16) * 257)),
        "16bit_rgb_raw": SIG + _ihdr(2, 2, 16, 2) + _chunk(b"IDAT", zlib.compress(b"\x00" + b"\x00" * 12 + b"\x00" + b"\x00" * 12))
        + _chunk(b"IEND", b""),
        "interlaced": _interlaced_1x1(),
        "apng": apng,
        "trns_rgb": _png(Image.fromarray(rgb, "RGB"), transparency=(1, 2, 3)),
        "trns_grey": _png(Image.fromarray(g, "L"), transparency=7),
        "trns_after_idat": _rebuild(_chunks(base)[:-1] + [(b"tRNS", b"\x00\x01\x00\x02\x00\x03"), (b"IEND", b"")]),
        "text_after_idat": _rebuild(_chunks(base)[:-1] + [(b"tEXt", b"k\x00v"), (b"IEND", b"")]),
        "iccp": _insert_before_idat(base, b"iCCP", b"x\x00\x00" + zlib.compress(b"junk")),
        "jpeg": jpg.getvalue(),
        "gif": _png(Image.fromarray(rgb, "RGB")).replace(SIG, b"GIF89a\x00\x00", 1),
        "truncated_in_idat": base[: idat_at + 20],
        "truncated_no_iend": base[:-12],
        "truncated_header": base[:30],
        "corrupt_idat": bytes(flipped),
        "bad_ihdr_crc": bytes(bad_ihdr_crc),
        "bad_phys_crc": bytes(bad_phys_crc),
        "bad_idat_crc": bytes(bad_idat_crc),
        "bad_adler_bad_crc": _bad_adler(base, fix_crc=False),
        "huge_header": SIG + _ihdr(100_000, 100_000) + _chunk(b"IDAT", zlib.compress(b"\x00" * 301))
        + _chunk(b"IEND", b""),
        # zlib streams with correct chunk CRCs but the wrong amount of data.
        "short_stream": _with_scanlines(rgb.shape[1], rgb.shape[0], raw_rows[:-1]),
        "long_stream": _with_scanlines(rgb.shape[1], rgb.shape[0], raw_rows + raw_rows[-1:]),
        "junk_after_stream": _rebuild([(b"IHDR", _chunks(base)[0][1]),
                                       (b"IDAT", zlib.compress(b"".join(raw_rows)) + b"junk"), (b"IEND", b"")]),
        "zero_width": SIG + _ihdr(0, 5) + _chunk(b"IDAT", zlib.compress(b"")) + _chunk(b"IEND", b""),
        "empty": b"",
        "signature_only": SIG,
    }


@pytest.mark.parametrize("name", sorted(_cases()))
def test_unhandled_inputs_give_none(name):
    data = _cases()[name]
    assert ink_u8_fast(data, M) is None


def test_interlaced_case_is_a_real_interlaced_png():
    im = Image.open(io.BytesIO(_interlaced_1x1()))
    assert im.info.get("interlace") == 1
    im.load()


def test_too_large_by_header_is_left_to_pillow_which_refuses_it():
    data = _cases()["huge_header"]
    assert ink_u8_fast(data, M) is None
    with pytest.raises(ImageTooLarge):
        P._decode_u8(data, M)
    small = _rgb_png(20, 10)  # 200 pixels
    assert ink_u8_fast(small, 199) is None
    assert ink_u8_fast(small, 200) is not None


@pytest.mark.parametrize("value", [None, "abc", 12, bytearray(b"x"), memoryview(b"")])
def test_non_bytes_give_none(value):
    assert ink_u8_fast(value, M) is None


def test_pillow_path_raises_item_errors_for_the_none_cases():
    for name, data in _cases().items():
        if ink_u8_fast(data, M) is not None:
            continue
        try:
            P._decode_u8(data, M)
        except ItemError:
            pass  # the Pillow path reports it


def test_mutated_pngs_never_raise_and_never_disagree():
    """Truncations and byte flips anywhere: the fast path returns None or Pillow's image."""
    rng = np.random.default_rng(5)
    rgb = rng.integers(0, 256, (12, 14, 3), dtype=np.uint8)
    alpha = np.zeros((12, 14), np.uint8)
    alpha[3:9, 4:10] = 255
    seeds = [
        _png(Image.fromarray(rgb, "RGB")),
        _png(Image.fromarray(np.dstack([rgb, alpha]), "RGBA")),
        _png(Image.fromarray(rgb[..., 0], "L"), dpi=(72, 72)),
    ]
    for data in seeds:
        for cut in range(0, len(data), 3):
            _equal_or_none(data[:cut])
        for _ in range(150):
            b = bytearray(data)
            i = int(rng.integers(len(b)))
            b[i] ^= 1 << int(rng.integers(8))
            _equal_or_none(bytes(b))


def test_crafted_bad_adler_with_correct_crcs_is_left_to_pillow():
    # zlib-ng inflates and checks the Adler-32 that pyspng's libspng skips.
    data = _bad_adler(_rgb_png(), fix_crc=True)
    with pytest.raises(ItemError):
        P._decode_u8(data, M)
    assert ink_u8_fast(data, M) is None


# --------------------------------------------------------------------------- (c) the compiled loops


def _filtered_png(arr: np.ndarray, filters: list[int], rng: np.random.Generator) -> bytes:
    """A PNG of ``arr`` (HxWxC uint8, C = 1..4) whose rows use the given filter
    types, applied here as the PNG spec defines them (ISO/IEC 15948, 9.2)."""
    h, w, c = arr.shape
    ctype = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows, prev = [], np.zeros(w * c, np.int32)
    for y in range(h):
        x = arr[y].reshape(-1).astype(np.int32)
        a = np.concatenate([np.zeros(c, np.int32), x[:-c]])
        upper_left = np.concatenate([np.zeros(c, np.int32), prev[:-c]])
        ft = filters[y]
        if ft == 0:
            pred = np.zeros_like(x)
        elif ft == 1:
            pred = a
        elif ft == 2:
            pred = prev
        elif ft == 3:
            pred = (a + prev) // 2
        else:
            p = a + prev - upper_left
            pa, pb, pc = np.abs(p - a), np.abs(p - prev), np.abs(p - upper_left)
            pred = np.where((pa <= pb) & (pa <= pc), a, np.where(pb <= pc, prev, upper_left))
        rows.append(bytes([ft]) + ((x - pred) % 256).astype(np.uint8).tobytes())
        prev = x
    return SIG + _ihdr(w, h, 8, ctype) + _chunk(b"IDAT", zlib.compress(b"".join(rows))) + _chunk(b"IEND", b"")


@pytest.mark.parametrize("channels", [1, 2, 3, 4])
def test_every_filter_type_decodes_as_pillow_does(channels, backend):
    """Rows of each filter type, in every order, on noise and on flat areas
    (where Paeth takes its shortcut), equal Pillow's decode."""
    rng = np.random.default_rng(channels)
    for h, w in [(23, 17), (5, 1), (1, 6), (40, 40)]:
        noise = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
        flat = np.full((h, w, channels), 200, np.uint8)
        flat[h // 3 : h // 2 + 1, w // 4 : w // 2 + 1] = rng.integers(0, 256, channels, dtype=np.uint8)
        for arr in (noise, flat):
            for filters in ([k] * h for k in range(5)):
                png = _filtered_png(arr, filters, rng)
                ref = np.asarray(Image.open(io.BytesIO(png)))
                assert np.array_equal(ref.reshape(arr.shape), arr)  # the PNG is what we meant
                w_, h_, ctype, idat = F._scan(png, M)
                raw = F._inflate(png, idat, h * (1 + w * channels))
                px = F._pixels(png, raw, w, h, ctype)
                got = px if px.shape[2] == channels else px[..., [0, 3]]  # libspng: grey+alpha as RGBA
                assert np.array_equal(got, arr), (backend, filters[0], h, w)
            _equal_or_none(_filtered_png(noise, list(rng.integers(0, 5, h)), rng))


def test_unknown_filter_type_is_left_to_pillow_which_refuses_it():
    rows = [b"\x05" + bytes(30), b"\x00" + bytes(30)]  # type 5 does not exist
    data = _with_scanlines(10, 2, rows)
    assert ink_u8_fast(data, M) is None
    with pytest.raises(ItemError):
        P._decode_u8(data, M)


def test_compiled_loops_check_their_arguments():
    if COMPILED is None:
        pytest.skip("worker._fastpng is not built (no C compiler at install)")
    C = COMPILED
    with pytest.raises(ValueError, match="expected 62 bytes"):
        C.unfilter(bytes(61), 10, 2, 3)
    for w, h, nc in [(0, 2, 3), (10, 0, 3), (10, 2, 0), (10, 2, 5), (2**62, 2**62, 4), (-1, 2, 3)]:
        with pytest.raises(ValueError):
            C.unfilter(bytes(62), w, h, nc)
    with pytest.raises(ValueError, match="unknown PNG filter type 7"):
        C.unfilter(b"\x00" + bytes(30) + b"\x07" + bytes(30), 10, 2, 3)
    with pytest.raises(ValueError):
        C.chebyshev(bytes(10), 3, b"\0\0\0")  # not whole pixels
    with pytest.raises(ValueError):
        C.chebyshev(bytes(12), 2, b"\0\0\0")
    with pytest.raises(ValueError):
        C.chebyshev(bytes(12), 3, b"\0\0")
    with pytest.raises(ValueError):
        C.channel(bytes(12), 4, 4)
    with pytest.raises(ValueError):
        C.channel(bytes(12), 3, 0)
    with pytest.raises(TypeError):
        C.unfilter("text", 1, 1, 1)


@pytest.mark.parametrize("nc", [3, 4])
def test_compiled_chebyshev_and_channel_equal_numpy(nc):
    if COMPILED is None:
        pytest.skip("worker._fastpng is not built (no C compiler at install)")
    rng = np.random.default_rng(nc)
    for n in (1, 7, 31, 32, 33, 1000):  # around the vector widths, and their tails
        px = rng.integers(0, 256, (n, nc), dtype=np.uint8)
        bg = rng.integers(0, 256, 3, dtype=np.uint8)
        want = np.abs(px[:, :3].astype(int) - bg).max(axis=1)
        got = np.frombuffer(COMPILED.chebyshev(px, nc, bg.tobytes()), np.uint8)
        assert np.array_equal(got, want)
        for k in range(nc) if nc == 4 else ():
            assert COMPILED.channel(px, 4, k) == px[:, k].tobytes()
    two = rng.integers(0, 256, (33, 2), dtype=np.uint8)
    assert COMPILED.channel(two, 2, 1) == two[:, 1].tobytes()


def test_random_scanlines_are_answered_only_as_pillow_decodes_them():
    """Random sizes, colour types and filter bytes (a few invalid, a few streams
    one byte short), flat or noisy rows: every answer equals Pillow's decode."""
    rng = np.random.default_rng(12)
    answered = 0
    for _ in range(600):
        w, h = (int(v) for v in rng.integers(1, 40, 2))
        ctype = int(rng.choice([0, 2, 4, 6]))
        c = {0: 1, 2: 3, 4: 2, 6: 4}[ctype]
        rows = []
        for _y in range(h):
            ft = int(rng.integers(0, 5)) if rng.random() > 0.02 else int(rng.integers(5, 256))
            body = rng.integers(0, 256, w * c, dtype=np.uint8) if rng.random() < 0.5 else np.zeros(w * c, np.uint8)
            rows.append(bytes([ft]) + body.tobytes())
        raw = b"".join(rows)
        if rng.random() < 0.05:
            raw = raw[:-1]
        data = SIG + _ihdr(w, h, 8, ctype) + _chunk(b"IDAT", zlib.compress(raw)) + _chunk(b"IEND", b"")
        fast = ink_u8_fast(data, M)
        if fast is not None:
            answered += 1
            assert np.array_equal(np.asarray(fast), np.asarray(P._decode_u8(data, M)))
    assert answered > 150  # most opaque and transparent-background cases are answered
