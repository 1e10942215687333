"""Load the EMNIST model artifact safely and classify batches of 28x28 images.

The artifact (``artifacts/emnist_model.joblib``) is a pickle, and unpickling
runs code, so it is only opened after it has been checked against its model
card (``artifacts/emnist_model.json``, the same name with ``.json``):

1. the card must exist and be valid JSON naming the artifact's sha256;
2. the file's sha256 must equal the card's (a tampered or truncated file is
   refused *before* it is unpickled);
3. the installed scikit-learn version must equal the one the card was trained
   with (pickles are not portable across scikit-learn versions).

Any mismatch raises :class:`inkq.errors.ArtifactMismatch`; a missing file or
unreadable card raises :class:`inkq.errors.ModelError`.

The artifact holds a dict ``{"format", "pipeline", "class_prior", "labels"}``:
``pipeline`` is a scikit-learn pipeline (features from :mod:`worker.features`
then a classifier) trained on the unbalanced training set, and
``class_prior`` its class frequencies. :meth:`Model.predict_proba` divides by
the prior and renormalises, so every character gets a fair chance whatever
its frequency in the training files.
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from inkq.errors import ArtifactMismatch, ModelError

#: The artifact format this module reads.
ARTIFACT_FORMAT = "inkq-emnist/1"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def command_line(argv: list[str] | None = None) -> str:
    """A command line as typed, for a model card: ``python -m worker.<module> ...``
    when a module of this package was run, else the program's name
    (``inkq eval ...``), never the install path."""
    argv = list(sys.argv if argv is None else argv)
    if not argv:
        return ""
    prog = Path(argv[0])
    if prog.suffix == ".py" and prog.parent.name == "worker":
        head = ["python", "-m", f"worker.{prog.stem}"]
    else:
        head = [prog.name]
    return " ".join(shlex.quote(a) for a in [*head, *argv[1:]])


def write_card(path: Path, card: dict) -> None:
    """Write a model card atomically (JSON, indented)."""
    path = Path(path)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(card, indent=2, ensure_ascii=False) + "\n")
    os.replace(tmp, path)


def card_path_for(path: Path) -> Path:
    """The model card beside an artifact: same name, ``.json``."""
    return Path(path).with_suffix(".json")


class SoftVote(ClassifierMixin, BaseEstimator):
    """Average the ``predict_proba`` of already-fitted classifiers (an ensemble
    of MLPs trained with different seeds). Picklable; built fitted."""

    def __init__(self, estimators: list):
        self.estimators = estimators

    @property
    def classes_(self) -> np.ndarray:
        return self.estimators[0].classes_

    def __sklearn_is_fitted__(self) -> bool:
        return True

    def fit(self, X, y=None):  # noqa: D102 - members are fitted before they are combined
        return self

    def predict_proba(self, X) -> np.ndarray:
        p = self.estimators[0].predict_proba(X)
        for est in self.estimators[1:]:
            p = p + est.predict_proba(X)
        return p / len(self.estimators)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]


def correct_priors(proba: np.ndarray, class_prior: np.ndarray) -> np.ndarray:
    """Divide probabilities by the training class priors and renormalise rows."""
    p = proba / class_prior[None, :]
    s = p.sum(axis=1, keepdims=True)
    return (p / np.where(s > 0, s, 1.0)).astype(np.float32)


#: Images per call of the pipeline. The features work in smaller slices of
#: their own (:data:`worker.features.SLICE`), so this sizes the networks'
#: matrix products, which run faster on more rows: measured on one core with
#: three networks, 10,300 images/s in calls of 128, 10,900 in 256, 11,500 in 512.
BATCH = 512


@dataclass(eq=False)
class Model:
    """A loaded, verified model.

    ``labels[i]`` is the character of class ``i``; ``version`` identifies the
    artifact (its card's ``version``, by default the first 12 hex digits of
    its sha256); ``card`` is the model card as a dict.
    """

    pipeline: Any
    class_prior: np.ndarray
    labels: tuple[str, ...]
    version: str
    card: dict = field(default_factory=dict)

    @property
    def n_classes(self) -> int:
        return len(self.labels)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """``(n, 28, 28)`` float32 upright images in [0, 1] -> ``(n, 47)`` probabilities.

        Vectorised over slices of :data:`BATCH` images; the probabilities are
        corrected for the training set's class imbalance and sum to 1 per row.
        """
        x = np.asarray(x, dtype=np.float32)
        if x.ndim == 2 and x.shape == (28, 28):
            x = x[None]
        if x.ndim != 3 or x.shape[1:] != (28, 28):
            raise ValueError(f"expected (n, 28, 28) images, got shape {x.shape}")
        if len(x) == 0:
            return np.zeros((0, self.n_classes), np.float32)
        proba = np.concatenate([self.pipeline.predict_proba(x[i:i + BATCH])
                                for i in range(0, len(x), BATCH)])
        return correct_priors(np.asarray(proba, dtype=np.float64), self.class_prior)


def load_model(path: Path, card_path: Path | None = None) -> Model:
    """Verify and load the artifact at ``path`` (see the module docstring)."""
    path = Path(path)
    card_path = Path(card_path) if card_path is not None else card_path_for(path)
    if not path.is_file():
        raise ModelError(f"model artifact not found: {path}")
    try:
        card = json.loads(card_path.read_text())
    except FileNotFoundError as exc:
        raise ModelError(f"model card not found beside the artifact: {card_path}") from exc
    except (OSError, ValueError) as exc:
        raise ModelError(f"model card {card_path} is not readable JSON: {exc}") from exc
    expected = (card.get("artifact") or {}).get("sha256")
    if not expected:
        raise ArtifactMismatch(f"model card {card_path} has no artifact.sha256")
    actual = sha256_file(path)
    if actual != expected:
        raise ArtifactMismatch(
            f"model artifact {path} does not match its card {card_path}: sha256 is "
            f"{actual}, card says {expected} (modified, truncated or the wrong file); "
            "refusing to unpickle it"
        )
    import sklearn

    want = (card.get("versions") or {}).get("scikit-learn")
    if want != sklearn.__version__:
        raise ArtifactMismatch(
            f"model artifact {path} was trained with scikit-learn {want}, but "
            f"scikit-learn {sklearn.__version__} is installed; install scikit-learn=={want} "
            "or retrain the model (`inkq train`)"
        )
    import joblib

    try:
        obj = joblib.load(path)
    except Exception as exc:  # noqa: BLE001 - any unpickling failure is a model error
        raise ModelError(f"cannot load model artifact {path}: {exc}") from exc
    if not isinstance(obj, dict) or obj.get("format") != ARTIFACT_FORMAT:
        raise ArtifactMismatch(f"model artifact {path} is not in format {ARTIFACT_FORMAT}")
    labels = tuple(card.get("labels") or obj.get("labels") or ())
    if tuple(obj.get("labels", labels)) != labels:
        raise ArtifactMismatch(f"labels of {path} differ from its card's")
    prior = np.asarray(obj["class_prior"], dtype=np.float64)
    if len(labels) != len(prior):
        raise ArtifactMismatch(f"{path}: {len(labels)} labels but {len(prior)} class priors")
    version = str(card.get("version") or actual[:12])
    return Model(pipeline=obj["pipeline"], class_prior=prior, labels=labels, version=version, card=card)
