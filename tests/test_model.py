"""The committed model artifact: verified loading, probabilities, accuracy and canvas fidelity."""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from inkq.errors import ArtifactMismatch, ModelError
from worker.emnist import load_split
from worker.model import Model, load_model
from worker.preprocess import preprocess
from worker.render import render_canvas, render_marker, render_pen, render_stray

ROOT = Path(__file__).resolve().parents[1]
ARTIFACT = ROOT / "artifacts" / "emnist_model.joblib"
CARD = ROOT / "artifacts" / "emnist_model.json"


@pytest.fixture(scope="module")
def model() -> Model:
    return load_model(ARTIFACT)


def test_the_compiled_features_give_the_same_answers(model, emnist_test, monkeypatch):
    """``worker._features`` against the numpy code it replaces, through the model."""
    from worker import features

    if features._compiled is None:
        pytest.skip("worker._features is not built (no C compiler at install)")
    X = emnist_test[0][:1000].astype(np.float32) / 255
    fast = model.predict_proba(X)
    monkeypatch.setattr(features, "_compiled", None)
    slow = model.predict_proba(X)
    assert np.array_equal(fast.argmax(1), slow.argmax(1))
    assert np.abs(fast - slow).max() < 1e-4


@pytest.fixture(scope="module")
def sample(emnist_dir):
    """A fixed random 400 of the balanced test set."""
    X, y = load_split(emnist_dir, "test")
    idx = np.random.default_rng(11).choice(len(X), 400, replace=False)
    return X[idx], y[idx]


def test_card_records_what_it_should():
    card = json.loads(CARD.read_text())
    for key in ("artifact", "versions", "labels", "data", "training", "version"):
        assert key in card
    assert card["versions"]["scikit-learn"] and card["versions"]["numpy"]
    assert len(card["artifact"]["sha256"]) == 64
    assert card["training"]["command"] and card["training"]["time_s"] > 0
    assert set(card["data"]["sha256"]) >= {"emnist-47-train-images-idx3-ubyte.gz",
                                           "emnist-47-test-images-idx3-ubyte.gz"}
    assert ARTIFACT.stat().st_size <= 25_000_000


def test_loaded_model(model):
    assert model.labels == tuple("0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabdefghnqrt")
    assert model.version and model.card["artifact"]["sha256"].startswith(model.version[:12]) or model.version


def test_predict_proba(model, sample):
    X, _ = sample
    p = model.predict_proba(X[:50].astype(np.float32) / 255)
    assert p.shape == (50, 47) and p.dtype == np.float32
    assert np.allclose(p.sum(1), 1.0, atol=1e-4) and p.min() >= 0
    assert model.predict_proba(np.zeros((0, 28, 28), np.float32)).shape == (0, 47)
    with pytest.raises(ValueError):
        model.predict_proba(np.zeros((3, 784), np.float32))


def test_predict_proba_in_slices_equals_one_call(model, sample, monkeypatch):
    """A batch larger than BATCH is classified in slices; the rows must not depend on it."""
    from worker import model as model_module
    from worker.model import correct_priors

    X = sample[0].astype(np.float32) / 255
    monkeypatch.setattr(model_module, "BATCH", 96)
    assert len(X) > 2 * model_module.BATCH
    whole = correct_priors(np.asarray(model.pipeline.predict_proba(X), np.float64), model.class_prior)
    sliced = model.predict_proba(X)
    assert sliced.shape == whole.shape
    assert np.allclose(sliced, whole, atol=1e-6)


def test_raw_accuracy(model, sample):
    X, y = sample
    p = model.predict_proba(X.astype(np.float32) / 255)
    top1 = (p.argmax(1) == y).mean()
    top5 = (np.argsort(-p, 1)[:, :5] == y[:, None]).any(1).mean()
    assert top1 >= 0.84 and top5 >= 0.98, (top1, top5)  # measured 0.8675 / 0.995


def _rendered_accuracy(model, X, y, render, seed):
    rng = np.random.default_rng(seed)
    imgs = np.stack([preprocess(render(x, rng)) for x in X])
    return float((model.predict_proba(imgs).argmax(1) == y).mean())


def test_canvas_and_pen_fidelity(model, sample):
    """Rendered canvases lose little against the raw images (400 images: the
    tolerances add ~2 standard errors of a paired difference to the targets of
    1 and 3 points; the full figures come from `inkq eval`)."""
    X, y = sample
    raw = float((model.predict_proba(X.astype(np.float32) / 255).argmax(1) == y).mean())
    canvas = _rendered_accuracy(model, X, y, render_canvas, 1)
    pen = _rendered_accuracy(model, X, y, render_pen, 2)
    marker = _rendered_accuracy(model, X, y, render_marker, 3)
    assert raw - canvas <= 0.04, (raw, canvas)
    assert raw - pen <= 0.07, (raw, pen)
    # Pen drawings with settings training never sees: -3.08 points on the full test set.
    assert raw - marker <= 0.09, (raw, marker)
    # With a stray dot beside them: -4.10 points on the full set (-45 if the dot were kept).
    stray = _rendered_accuracy(model, X, y, render_stray, 4)
    assert raw - stray <= 0.09, (raw, stray)


def test_throughput(model):
    """features + predict_proba from 28x28 arrays; the target is 10,000/s on a
    quiet core. Measured in CPU time (the suite shares its cores) with a wide
    margin, so only a gross slowdown fails. One BLAS thread, as in a worker:
    more would count their spinning as CPU time."""
    from threadpoolctl import threadpool_limits

    X = np.random.default_rng(0).random((2000, 28, 28), dtype=np.float32)
    with threadpool_limits(1):
        model.predict_proba(X[:100])
        t = time.process_time()
        for i in range(0, len(X), 250):  # in batches, as workers classify chunks
            model.predict_proba(X[i:i + 250])
        rate = 2000 / max(time.process_time() - t, 1e-6)
    assert rate > 2500, rate


# --------------------------------------------------------------------------- verification


@pytest.fixture()
def copy(tmp_path):
    a, c = tmp_path / "emnist_model.joblib", tmp_path / "emnist_model.json"
    shutil.copy(ARTIFACT, a)
    shutil.copy(CARD, c)
    return a, c


def test_tampered_artifact_is_refused(copy):
    a, _ = copy
    b = bytearray(a.read_bytes())
    b[len(b) // 2] ^= 0x01
    a.write_bytes(bytes(b))
    with pytest.raises(ArtifactMismatch, match="sha256"):
        load_model(a)


def test_truncated_artifact_is_refused(copy):
    a, _ = copy
    a.write_bytes(a.read_bytes()[:-100])
    with pytest.raises(ArtifactMismatch):
        load_model(a)


def test_other_sklearn_version_is_refused(copy):
    a, c = copy
    card = json.loads(c.read_text())
    card["versions"]["scikit-learn"] = "0.24.2"
    c.write_text(json.dumps(card))
    with pytest.raises(ArtifactMismatch, match="scikit-learn 0.24.2"):
        load_model(a)


def test_missing_or_broken_card(copy):
    a, c = copy
    c.write_text("{not json")
    with pytest.raises(ModelError):
        load_model(a)
    c.unlink()
    with pytest.raises(ModelError, match="card not found"):
        load_model(a)
    with pytest.raises(ModelError, match="not found"):
        load_model(a.parent / "nope.joblib")


def test_card_path_argument(copy, tmp_path):
    a, c = copy
    other = tmp_path / "elsewhere.json"
    c.rename(other)
    assert load_model(a, other).labels[10] == "A"


def test_command_line_names_the_command_as_typed():
    from worker.model import command_line

    assert command_line(["/src/inkq/worker/train.py", "--epochs", "20"]) == "python -m worker.train --epochs 20"
    assert command_line(["/home/me/.venv/bin/inkq", "eval", "--data-dir", "my dir"]) == "inkq eval --data-dir 'my dir'"


def test_eval_writes_figures_command_and_confusion_into_a_card(tmp_path, emnist_dir):
    from worker.evaluate import main as run_eval

    art = tmp_path / "m.joblib"
    shutil.copy(ARTIFACT, art)
    shutil.copy(CARD, tmp_path / "m.json")
    lines: list[str] = []
    fig = run_eval(art, emnist_dir, limit=150, canvas=False, pen=False, marker=False, stray=False, update_card=True,
                   confusion_png=tmp_path / "c.png", command="inkq eval --limit 150", echo=lines.append)
    card = json.loads((tmp_path / "m.json").read_text())
    assert card["eval"] == fig and fig["command"] == "inkq eval --limit 150" and fig["time_s"] > 0
    assert fig["test_images"] == 150 and 0.5 < fig["raw"]["top1"] <= 1.0
    lo, hi = fig["raw"]["top1_95"]
    assert lo < fig["raw"]["top1"] < hi and hi - lo > 0.05  # 150 images: several points either way
    assert any("95%" in line for line in lines)
    assert (tmp_path / "c.png").stat().st_size > 0
    assert card["training"] == json.loads(CARD.read_text())["training"]  # the rest is kept
    assert any("top1" in line for line in lines)


def test_the_top1_interval_covers_the_true_rate_95_times_in_100():
    from worker.evaluate import wilson_interval

    # all right: the lower bound is n / (n + z^2), the interval's exact form there
    assert wilson_interval(200, 200) == pytest.approx((200 / (200 + 1.96 ** 2), 1.0))
    assert wilson_interval(0, 0) == (0.0, 1.0)
    # on the test set's size it is the normal interval, p +- 1.96 sqrt(p (1 - p) / n)
    lo, hi = wilson_interval(8299, 9400)
    half = 1.96 * np.sqrt(0.8829 * 0.1171 / 9400)
    assert lo == pytest.approx(0.8829 - half, abs=5e-4) and hi == pytest.approx(0.8829 + half, abs=5e-4)
    # a class's 200 test images: the interval holds the true recall about 95% of the time
    rng = np.random.default_rng(0)
    covered = [lo <= 0.6 <= hi for lo, hi in (wilson_interval(int(k), 200) for k in rng.binomial(200, 0.6, 4000))]
    assert 0.93 < np.mean(covered) < 0.97
