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


def classification_metrics(idx: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """Accuracy, balanced accuracy, macro F1 / precision / recall, log-loss and (two classes) ROC-AUC.

    ``idx`` holds each row's true class index, -1 for a label not seen in training; ``proba`` is [N, K]. Unseen
    labels count as errors in accuracy/F1 and are left out of log-loss/ROC-AUC.
    """
    from sklearn import metrics as skm  # imported when scoring: the CLI checks a config without it

    pred = proba.argmax(axis=1)
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
        if k == 2 and len(set(idx[seen])) == 2:
            out["roc_auc"] = skm.roc_auc_score(idx[seen], proba[seen, 1])
    return {m: float(v) for m, v in out.items()}
