"""The pure pipeline functions: base64 handling and per-item errors."""

from __future__ import annotations

import base64

import numpy as np
import pytest

from inkq.errors import ImageTooLarge, InvalidBase64
from worker.pipeline import decode_base64, top_items


def test_data_urls_and_bare_base64_decode_alike():
    raw = b"\x89PNG\r\n\x1a\n-some-bytes"
    b64 = base64.b64encode(raw).decode()
    assert decode_base64(b64, max_bytes=100) == raw
    assert decode_base64("data:image/png;base64," + b64, max_bytes=100) == raw
    assert decode_base64(b64[:8] + "\n" + b64[8:], max_bytes=100) == raw


def test_what_other_clients_send_decodes_too():
    raw = b"\x89PNG\r\n\x1a\n!\xfb\xef\xbe\xff\xff\xff-some"  # base64: ...h++++////LXNvbWU=
    b64 = base64.b64encode(raw).decode()
    assert "+" in b64 and "/" in b64 and b64.endswith("=")
    assert decode_base64("DATA:Image/PNG;Base64," + b64, max_bytes=100) == raw
    assert decode_base64(base64.urlsafe_b64encode(raw).decode(), max_bytes=100) == raw
    assert decode_base64(b64.rstrip("="), max_bytes=100) == raw
    assert decode_base64("\r\n".join(b64[i:i + 8] for i in range(0, len(b64), 8)), max_bytes=100) == raw


@pytest.mark.parametrize("text", ["!!!", "abcde", "ab*d", "data:image/png,abcd", "data:;base64", "é" * 8])
def test_invalid_base64(text):
    with pytest.raises(InvalidBase64):
        decode_base64(text, max_bytes=100)


def test_size_checked_before_decoding():
    with pytest.raises(ImageTooLarge):
        decode_base64("A" * 1000, max_bytes=100)


def test_top_items_are_sorted_and_labelled():
    probs = np.array([[0.1, 0.6, 0.05, 0.2, 0.03, 0.02]])
    [item] = top_items(probs, list("abcdef"))
    assert item["prediction"] == "b" and item["confidence"] == 0.6
    assert [c["label"] for c in item["top5"]] == ["b", "d", "a", "c", "e"]


def test_probabilities_are_short_decimals():
    probs = np.array([[0.98430001, 0.0075, 0.0036, 0.0016, 0.0008, 0.0022]], dtype=np.float32)
    [item] = top_items(probs, list("abcdef"))
    assert [c["prob"] for c in item["top5"]] == [0.9843, 0.0075, 0.0036, 0.0022, 0.0016]
    assert '"prob": 0.9843' in __import__("json").dumps(item)
