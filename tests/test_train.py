"""Training end to end on a small subset: a loadable artifact and a complete card."""

from __future__ import annotations

import json

import numpy as np

from worker.model import load_model
from worker.train import augment, canvas_normalise, train




def test_train_small_subset(tmp_path, emnist_dir):
    out = tmp_path / "m.joblib"
    lines: list[str] = []
    card = train(emnist_dir, out, limit=2000, epochs=1, seed=3, canvas_mix=0.5, evaluate_test=True,
                 eval_limit=200, eval_renderings=False, command="pytest", progress=lines.append)
    assert out.exists() and out.with_suffix(".json").exists()
    on_disk = json.loads(out.with_suffix(".json").read_text())
    assert on_disk["artifact"]["sha256"] == card["artifact"]["sha256"]
    assert on_disk["training"]["command"] == "pytest"
    assert on_disk["data"]["limit"] == 2000
    assert "top1" in on_disk["eval"]["raw"]
    assert any("epoch 1/1" in m for m in lines) and any("left" in m for m in lines)
    assert any("canvas-normalising" in m for m in lines)
    assert on_disk["training"]["members"] == 2 and len(on_disk["training"]["best_epoch"]) == 2
    m = load_model(out)
    p = m.predict_proba(np.zeros((2, 28, 28), np.float32))
    assert p.shape == (2, 47)


def test_augment_is_reproducible_and_sane():
    X = np.zeros((4, 28, 28), np.float32)
    X[:, 6:22, 12:16] = 1.0
    a = augment(X, np.random.default_rng(0))
    b = augment(X, np.random.default_rng(0))
    assert np.array_equal(a, b)
    assert a.shape == X.shape and a.dtype == np.float32
    assert a.min() >= 0 and a.max() <= 1
    assert np.all(a.sum((1, 2)) > 0.5 * X.sum((1, 2)))


def test_canvas_normalise_keeps_images_emnist_like():
    X = np.zeros((3, 28, 28), np.float32)
    X[:, 4:24, 12:15] = 1.0  # a '1' of 3 px
    X[2] = 0.0  # blank: kept as it is
    out = canvas_normalise(X)
    assert out.shape == X.shape and out.dtype == np.float32
    assert out[0].max() == 1.0 and np.array_equal(out[2], X[2])
    rows = np.flatnonzero((out[0] > 0.1).any(1))
    assert 23 <= rows[-1] - rows[0] + 1 <= 25  # long side 24 px, as EMNIST
