"""Classification metrics: labels matched by their text, softmax, and the scores a classification task reports."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

log = logging.getLogger("polymodal")


def label_key(v: Any) -> str:
    """Labels are matched by their text, so 1, 1.0 and "1" are the same class."""
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return str(int(v))
    if isinstance(v, (np.generic,)):
        v = v.item()
    return str(v).strip()


def softmax(x: np.ndarray) -> np.ndarray:
    z = np.exp(x - x.max(axis=1, keepdims=True))
    return z / z.sum(axis=1, keepdims=True)


ECE_BINS = 15


def expected_calibration_error(idx: np.ndarray, proba: np.ndarray, bins: int = ECE_BINS) -> float:
    """Expected calibration error (Guo et al. 2017): the row-weighted mean gap between the top class's probability
    and how often the top class is right, over ``bins`` equal-width bins of that probability. NaN without rows."""
    if len(idx) == 0:
        return float("nan")
    conf = proba.max(axis=1)
    right = (proba.argmax(axis=1) == idx).astype(np.float64)
    # Bin b holds (b/bins, (b+1)/bins]; a confidence of exactly 0 goes to the first bin.
    which = np.clip(np.ceil(conf * bins).astype(np.int64) - 1, 0, bins - 1)
    gap = np.bincount(which, weights=conf - right, minlength=bins)
    return float(np.abs(gap).sum() / len(idx))


def average_precision(idx: np.ndarray, proba: np.ndarray) -> float:
    """PR-AUC as average precision: two classes, of the positive (second) class; more, the macro mean over the
    classes present in ``idx`` (one-vs-rest). NaN when no class has both positive and negative rows."""
    from sklearn import metrics as skm

    k = proba.shape[1]
    classes = [1] if k == 2 else list(range(k))
    scores = [
        skm.average_precision_score(idx == c, proba[:, c]) for c in classes if 0 < int((idx == c).sum()) < len(idx)
    ]
    return float(np.mean(scores)) if scores else float("nan")


def classification_metrics(idx: np.ndarray, proba: np.ndarray, pred: np.ndarray | None = None) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro F1 / precision / recall, log-loss, expected calibration error, PR-AUC
    (average precision) and (two classes) ROC-AUC.

    ``idx`` holds each row's true class index, -1 for a label not seen in training; ``proba`` is [N, K]; ``pred``
    the predicted class indices (default: the most probable class; a tuned decision threshold passes its own).
    Unseen labels count as errors in accuracy/F1 and are left out of log-loss/ECE/PR-AUC/ROC-AUC.
    """
    from sklearn import metrics as skm  # imported when scoring: the CLI checks a config without it

    pred = proba.argmax(axis=1) if pred is None else np.asarray(pred)
    unseen = idx < 0
    if unseen.any():
        log.warning(
            "%d rows have labels not seen in training; they count as errors in accuracy/F1 and are "
            "left out of log-loss/ROC-AUC",
            int(unseen.sum()),
        )
    k = proba.shape[1]
    # Unseen labels get their own index (k) so that they can only count as errors.
    true = np.where(unseen, k, idx)
    labels = list(range(k))
    out = {
        "accuracy": skm.accuracy_score(true, pred),
        "balanced_accuracy": skm.balanced_accuracy_score(true, pred) if len(set(true)) > 1 else float("nan"),
        "f1_macro": skm.f1_score(true, pred, labels=labels, average="macro", zero_division=0),
        "precision_macro": skm.precision_score(true, pred, labels=labels, average="macro", zero_division=0),
        "recall_macro": skm.recall_score(true, pred, labels=labels, average="macro", zero_division=0),
    }
    seen = ~unseen
    if seen.any():
        out["log_loss"] = skm.log_loss(idx[seen], np.clip(proba[seen], 1e-15, 1), labels=labels)
        out["ece"] = expected_calibration_error(idx[seen], proba[seen])
        out["pr_auc"] = average_precision(idx[seen], proba[seen])
        if k == 2 and len(set(idx[seen])) == 2:
            out["roc_auc"] = skm.roc_auc_score(idx[seen], proba[seen, 1])
    return {m: float(v) for m, v in out.items()}
