"""Reader for EMNIST's gzip-compressed IDX files.

The files (``<prefix>-train-images-idx3-ubyte.gz`` etc.) are big-endian IDX:
magic 2051 for images (``n, rows, cols`` follow), 2049 for labels (``n``
follows). EMNIST stores every image **transposed**; :func:`load_images`
returns them upright (``img.T`` per image; a rotation would mirror them).

Works unchanged for the shared ``emnist-47-*`` files and the official
``emnist-balanced-*`` files (``prefix="emnist-balanced"``).
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

IMAGES_MAGIC = 2051
LABELS_MAGIC = 2049
SPLITS = ("train", "test")


class IDXFormatError(ValueError):
    """A file is not the IDX file it should be (wrong magic, truncated)."""


def _read(path: str | Path) -> bytes:
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as fh:
            return fh.read()
    except (OSError, EOFError) as exc:  # gzip.BadGzipFile is an OSError
        raise IDXFormatError(f"{path}: cannot read ({exc})") from exc


def load_images(path: str | Path) -> np.ndarray:
    """Images of an IDX3 file as uint8 ``(n, 28, 28)``, upright (transposed back)."""
    raw = _read(path)
    if len(raw) < 16:
        raise IDXFormatError(f"{path}: too short for an IDX image header")
    magic, n, rows, cols = struct.unpack(">IIII", raw[:16])
    if magic != IMAGES_MAGIC:
        raise IDXFormatError(f"{path}: magic {magic}, expected {IMAGES_MAGIC} (IDX images)")
    if len(raw) - 16 != n * rows * cols:
        raise IDXFormatError(
            f"{path}: {len(raw) - 16} bytes of pixels, header says {n}x{rows}x{cols}"
        )
    arr = np.frombuffer(raw, dtype=np.uint8, offset=16).reshape(n, rows, cols)
    return np.ascontiguousarray(arr.transpose(0, 2, 1))


def load_labels(path: str | Path) -> np.ndarray:
    """Labels of an IDX1 file as int64 ``(n,)``."""
    raw = _read(path)
    if len(raw) < 8:
        raise IDXFormatError(f"{path}: too short for an IDX label header")
    magic, n = struct.unpack(">II", raw[:8])
    if magic != LABELS_MAGIC:
        raise IDXFormatError(f"{path}: magic {magic}, expected {LABELS_MAGIC} (IDX labels)")
    if len(raw) - 8 != n:
        raise IDXFormatError(f"{path}: {len(raw) - 8} labels, header says {n}")
    return np.frombuffer(raw, dtype=np.uint8, offset=8).astype(np.int64)


def split_paths(data_dir: str | Path, split: str, prefix: str = "emnist-47") -> tuple[Path, Path]:
    """Paths of the images and labels files of one split."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, not {split!r}")
    d = Path(data_dir)
    return (
        d / f"{prefix}-{split}-images-idx3-ubyte.gz",
        d / f"{prefix}-{split}-labels-idx1-ubyte.gz",
    )


def load_split(
    data_dir: str | Path, split: str, prefix: str = "emnist-47"
) -> tuple[np.ndarray, np.ndarray]:
    """``(X, y)`` of one split: X uint8 ``(n, 28, 28)`` upright, y int64 ``(n,)``."""
    img_path, lbl_path = split_paths(data_dir, split, prefix)
    for p in (img_path, lbl_path):
        if not p.exists():
            raise FileNotFoundError(f"EMNIST file not found: {p}")
    X = load_images(img_path)
    y = load_labels(lbl_path)
    if len(X) != len(y):
        raise IDXFormatError(f"{img_path}: {len(X)} images but {len(y)} labels")
    return X, y


def mapping_path(data_dir: str | Path, prefix: str = "emnist-47") -> Path:
    return Path(data_dir) / f"{prefix}-mapping.txt"


def load_mapping(data_dir: str | Path, prefix: str = "emnist-47") -> list[str]:
    """The characters of the classes, index = label, from ``<prefix>-mapping.txt``."""
    path = mapping_path(data_dir, prefix)
    pairs: dict[int, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            label, code = (int(t) for t in line.split())
        except ValueError as exc:
            raise IDXFormatError(f"{path}:{lineno}: expected 'label ascii_code'") from exc
        pairs[label] = chr(code)
    if sorted(pairs) != list(range(len(pairs))):
        raise IDXFormatError(f"{path}: labels are not 0..{len(pairs) - 1}")
    return [pairs[i] for i in range(len(pairs))]
