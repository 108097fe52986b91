"""Multi-label metrics over a [rows, tags] indicator matrix, and per-tag decision thresholds tuned for F1.

``true`` is a 0/1 matrix (a row's tags), ``proba`` the independent probability of each tag, ``thresholds`` one
decision threshold per tag (a tag is predicted when its probability is at least its threshold).
"""

from __future__ import annotations

import numpy as np

DEFAULT_THRESHOLD = 0.5


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))  # = 1 / (1 + exp(-x)), without overflow warnings


def predicted(proba: np.ndarray, thresholds: np.ndarray) -> np.ndarray:
    """The 0/1 predictions: each tag whose probability reaches its threshold."""
    return proba >= np.asarray(thresholds, dtype=np.float64)[None, :]


def average_precision(true: np.ndarray, score: np.ndarray) -> float:
    """Average precision of one tag (the area under its precision-recall curve, step-wise, as scikit-learn
    computes it); NaN when the tag has no positive row."""
    positives = int(true.sum())
    if positives == 0:
        return float("nan")
    order = np.argsort(-score, kind="stable")
    t, s = true[order].astype(np.float64), score[order]
    tp = np.cumsum(t)
    # precision is read at the last row of each run of tied scores: tied rows are ranked together
    last = np.r_[s[1:] != s[:-1], True]
    precision = tp[last] / (np.flatnonzero(last) + 1)
    recall_gain = np.diff(np.r_[0.0, tp[last]]) / positives
    return float((precision * recall_gain).sum())


def f1_scores(true: np.ndarray, pred: np.ndarray) -> np.ndarray:
    """F1 of each tag (columns); NaN for a tag with neither a positive nor a predicted positive row."""
    tp = (true & pred).sum(axis=0).astype(np.float64)
    denom = true.sum(axis=0) + pred.sum(axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2 * tp / np.maximum(denom, 1), np.nan)


def multilabel_metrics(true: np.ndarray, proba: np.ndarray, thresholds: np.ndarray) -> dict[str, float]:
    """F1 micro/macro, mAP, subset accuracy and Hamming loss; precision and recall (micro) for the record.

    - f1_micro: F1 of all (row, tag) decisions pooled;
    - f1_macro: the mean F1 of the tags that have a positive row;
    - mAP: the mean average precision of the tags that have a positive row (threshold-free);
    - subset_accuracy: the share of rows whose predicted tag set is exactly right;
    - hamming_loss: the share of wrong (row, tag) decisions, lower is better.
    """
    true = np.asarray(true).astype(bool)
    pred = predicted(proba, thresholds)
    tp, fp, fn = (true & pred).sum(), (~true & pred).sum(), (true & ~pred).sum()
    has_positive = true.any(axis=0)
    f1 = f1_scores(true, pred)
    ap = [average_precision(true[:, k], proba[:, k]) for k in np.flatnonzero(has_positive)]
    out = {
        "f1_micro": 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else 1.0,
        "f1_macro": float(np.mean(f1[has_positive])) if has_positive.any() else float("nan"),
        "mAP": float(np.mean(ap)) if ap else float("nan"),
        "subset_accuracy": float((true == pred).all(axis=1).mean()) if len(true) else float("nan"),
        "hamming_loss": float((true != pred).mean()) if true.size else float("nan"),
        "precision_micro": tp / (tp + fp) if tp + fp else float("nan"),
        "recall_micro": tp / (tp + fn) if tp + fn else float("nan"),
    }
    return {k: float(v) for k, v in out.items()}


def tune_thresholds(true: np.ndarray, proba: np.ndarray, default: float = DEFAULT_THRESHOLD) -> np.ndarray:
    """The threshold of each tag that maximises its F1 on these rows (``default`` for a tag without a positive).

    Every cut between two distinct sorted probabilities is tried; the threshold is placed half-way between the
    lowest probability kept and the highest one left out, so that a new row near the boundary is not decided by
    the exact value seen here. Ties in F1 go to the highest threshold (fewest predicted tags).
    """
    true = np.asarray(true).astype(bool)
    out = np.full(true.shape[1], default, dtype=np.float64)
    for k in range(true.shape[1]):
        positives = int(true[:, k].sum())
        if positives == 0:
            continue
        order = np.argsort(-proba[:, k], kind="stable")
        s, t = proba[order, k].astype(np.float64), true[order, k]
        tp = np.cumsum(t)
        cut = np.flatnonzero(np.r_[s[1:] != s[:-1], True])  # keep rows 0..i; ties stay together
        f1 = 2 * tp[cut] / (cut + 1 + positives)
        best = cut[int(np.argmax(f1))]
        out[k] = (s[best] + s[best + 1]) / 2 if best + 1 < len(s) else s[best] / 2
    return out
