"""The benchmark's images: EMNIST test images rendered once as 280x280 canvas PNGs.

Rendering costs a few ms per image, so the PNGs are cached under
``bench/.cache/`` in a trivial format (4-byte big-endian length, then the PNG,
repeated). The cache name carries the count, the seed and a hash of the
renderer's source and Pillow's version, so a changed renderer re-renders.
"""

from __future__ import annotations

import base64
import hashlib
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CACHE_DIR = Path(__file__).resolve().parent / ".cache"
DEFAULT_EMNIST_DIR = Path(os.environ.get("INKQ_EMNIST_DIR", ROOT.parent / "shared" / "emnist"))
DATA_URL_PREFIX = "data:image/png;base64,"


@dataclass(frozen=True)
class Images:
    """``pngs`` (raw bytes), ``urls`` (data URLs as a browser sends them) and ``labels``."""

    pngs: list[bytes]
    urls: list[str]
    labels: list[str]

    def __len__(self) -> int:
        return len(self.pngs)

    @property
    def mean_png_bytes(self) -> float:
        return float(np.mean([len(p) for p in self.pngs]))

    @property
    def mean_url_bytes(self) -> float:
        return float(np.mean([len(u) for u in self.urls]))

    def take(self, n: int) -> "Images":
        """``n`` images: the first ``n``, cycling through the set when ``n`` exceeds it."""
        idx = [i % len(self.pngs) for i in range(n)]
        return Images([self.pngs[i] for i in idx], [self.urls[i] for i in idx],
                      [self.labels[i] for i in idx])


def _renderer_hash() -> str:
    import PIL

    from worker import render

    h = hashlib.sha256(Path(render.__file__).read_bytes())
    h.update(PIL.__version__.encode())
    return h.hexdigest()[:10]


def _write(path: Path, pngs: list[bytes], labels: list[str]) -> None:
    tmp = path.with_suffix(".tmp")
    with open(tmp, "wb") as fh:
        for png, label in zip(pngs, labels):
            lb = label.encode()
            fh.write(struct.pack(">IB", len(png), len(lb)))
            fh.write(lb)
            fh.write(png)
    tmp.replace(path)


def _read(path: Path) -> tuple[list[bytes], list[str]]:
    raw = path.read_bytes()
    pngs, labels, pos = [], [], 0
    while pos < len(raw):
        n, nl = struct.unpack_from(">IB", raw, pos)
        pos += 5
        labels.append(raw[pos:pos + nl].decode())
        pos += nl
        pngs.append(raw[pos:pos + n])
        pos += n
    return pngs, labels


def load_images(n: int, *, seed: int = 2024, data_dir: Path = DEFAULT_EMNIST_DIR,
                cache_dir: Path = CACHE_DIR) -> Images:
    """``n`` distinct test-set images rendered as canvas PNGs (all colour styles), cached."""
    path = Path(cache_dir) / f"canvas-{n}-s{seed}-{_renderer_hash()}.bin"
    if path.exists():
        pngs, labels = _read(path)
    else:
        from worker.emnist import load_mapping, load_split
        from worker.render import render_canvas

        X, y = load_split(data_dir, "test")
        mapping = load_mapping(data_dir)
        rng = np.random.default_rng(seed)
        picks = rng.choice(len(X), size=min(n, len(X)), replace=False)
        picks = [picks[i % len(picks)] for i in range(n)]
        pngs = [render_canvas(X[i], rng) for i in picks]
        labels = [mapping[y[i]] for i in picks]
        path.parent.mkdir(parents=True, exist_ok=True)
        _write(path, pngs, labels)
    urls = [DATA_URL_PREFIX + base64.b64encode(p).decode("ascii") for p in pngs]
    return Images(pngs, urls, labels)
