"""The report's own matplotlib figures. Each function returns a :class:`matplotlib.figure.Figure`; :func:`to_png`
turns one into PNG bytes.

Figures are built with ``matplotlib.figure.Figure`` directly (not pyplot), so making a report never touches the global
pyplot state or needs a display. Every plot has a title, axis labels with units, and a legend where lines differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from ..metrics.classification import ECE_BINS, expected_calibration_error
from ..plotting import png_bytes

DPI = 110
ACCENT, SECOND, GREY, BAD = "#2563eb", "#ea580c", "#6b7280", "#dc2626"


def to_png(fig: Any, dpi: int = DPI) -> bytes:
    """PNG bytes of ``fig`` (no 'Software' metadata, so the same figure gives the same bytes). Every polymodal
    figure is made without pyplot (see polymodal.plotting), so there is nothing to close."""
    # bbox "tight": figures made elsewhere (polymodal.explain) may not use a layout engine; no clipped labels.
    return png_bytes(fig, dpi=dpi, bbox_inches="tight", metadata={"Software": None})


def training_curves(history: pd.DataFrame, metric: str, mode: str, best_epoch: int | None) -> Figure:
    """Loss (training and validation) and the monitored validation metric per epoch; the kept epoch marked."""
    epochs = history["epoch"].to_numpy(dtype=float) + 1  # shown 1-based, as the CLI prints them
    fig = Figure(figsize=(10, 3.8), layout="constrained")
    ax_loss, ax_metric = fig.subplots(1, 2)
    for col, name, colour in (("train_loss", "training", ACCENT), ("val_loss", "validation", SECOND)):
        if col in history and history[col].notna().any():
            ax_loss.plot(epochs, history[col], marker="o", ms=3, color=colour, label=name)
    ax_loss.set(title="Loss per epoch", xlabel="epoch", ylabel="loss (task loss, lower is better)")
    col = f"val_{metric}"
    if col in history and history[col].notna().any():
        ax_metric.plot(epochs, history[col], marker="o", ms=3, color=SECOND, label=f"validation {metric}")
    better = "higher" if mode == "max" else "lower"
    ax_metric.set(title=f"Validation {metric} per epoch", xlabel="epoch", ylabel=f"{metric} ({better} is better)")
    for ax in (ax_loss, ax_metric):
        if best_epoch is not None and best_epoch >= 0:
            ax.axvline(best_epoch + 1, color=GREY, linestyle="--", linewidth=1, label=f"kept: epoch {best_epoch + 1}")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=8)
        ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def confusion_matrix(matrix: np.ndarray, labels: Sequence[str], target: str) -> Figure:
    """Counts with the row share (of each true class) in each cell; colour = row share."""
    n = len(labels)
    size = min(3.2 + 0.6 * n, 9)
    fig = Figure(figsize=(size + 1.2, size), layout="constrained")
    ax = fig.subplots()
    totals = matrix.sum(axis=1, keepdims=True)
    share = np.divide(matrix, totals, out=np.zeros_like(matrix, dtype=float), where=totals > 0)
    im = ax.imshow(share, cmap="Blues", vmin=0, vmax=1)
    for i in range(n):
        for j in range(n):
            ax.text(
                j,
                i,
                f"{matrix[i, j]}\n{share[i, j]:.0%}",
                ha="center",
                va="center",
                fontsize=9,
                color="white" if share[i, j] > 0.6 else "black",
            )
    ax.set_xticks(range(n), labels, rotation=30 if n > 4 else 0, ha="right" if n > 4 else "center")
    ax.set_yticks(range(n), labels)
    ax.set(
        title=f"Confusion matrix ({int(matrix.sum())} test rows)", xlabel=f"predicted {target}", ylabel=f"true {target}"
    )
    fig.colorbar(im, ax=ax, label="share of the true class (row %)", format=lambda x, _: f"{x:.0%}")
    return fig


#: The fewest rows a calibration bin holds (fewer rows in the whole table: one bin); a dot of one or two rows is noise.
MIN_BIN_ROWS = 15


@dataclass
class CalibrationBin:
    """Rows whose predicted probability lies in [low, high): their count, mean probability and observed frequency."""

    low: float
    high: float
    rows: int
    mean_predicted: float
    observed: float


def calibration_bins(
    confidence: np.ndarray, observed: np.ndarray, bins: int = 10, min_rows: int = MIN_BIN_ROWS
) -> list[CalibrationBin]:
    """Equal-width probability bins, each sparse one merged with its neighbours until every bin holds at least
    ``min_rows`` rows (a last sparse bin joins the one before it). Empty bins are dropped."""
    confidence = np.asarray(confidence, dtype=float)
    observed = np.asarray(observed, dtype=float)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    groups: list[list[int]] = []  # runs of fine bins merged into one
    run: list[int] = []
    for b in range(bins):
        run.append(b)
        if counts[run].sum() >= min_rows:
            groups.append(run)
            run = []
    if run and counts[run].sum() > 0:
        if groups:
            groups[-1] += run
        else:
            groups.append(run)
    out = []
    for g in groups:
        mask = np.isin(which, g)
        n = int(mask.sum())
        if n == 0:
            continue
        out.append(
            CalibrationBin(
                float(edges[g[0]]),
                float(edges[g[-1] + 1]),
                n,
                float(confidence[mask].mean()),
                float(observed[mask].mean()),
            )
        )
    return out


def reliability(
    confidence: np.ndarray, observed: np.ndarray, what: str, bins: int = 10, min_rows: int = MIN_BIN_ROWS
) -> tuple[Figure, float, list[CalibrationBin]]:
    """Reliability diagram: mean predicted probability against the observed frequency per probability bin (sparse
    bins merged, see :func:`calibration_bins`; the dot's size and label give its rows), with a histogram of the
    probabilities beneath. Returns the figure, the expected calibration error (ECE) over those bins, and the bins."""
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(confidence, edges[1:-1]), 0, bins - 1)
    counts = np.bincount(which, minlength=bins)
    merged = calibration_bins(confidence, observed, bins, min_rows)
    total = sum(b.rows for b in merged)
    ece = float(sum(b.rows / total * abs(b.mean_predicted - b.observed) for b in merged)) if total else float("nan")
    mean_p = np.array([b.mean_predicted for b in merged])
    freq = np.array([b.observed for b in merged])
    rows = np.array([b.rows for b in merged])
    fig = Figure(figsize=(5.6, 5.6), layout="constrained")
    ax, hist = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", linewidth=1, label="perfectly calibrated")
    ax.plot(mean_p, freq, color=ACCENT, linewidth=1, zorder=2)
    sizes = 20 + 180 * rows / max(int(rows.max()), 1) if len(rows) else rows
    ax.scatter(
        mean_p, freq, s=sizes, color=ACCENT, zorder=3, label=f"this model (one dot per bin of ≥ {min_rows} rows)"
    )
    for x, y, n in zip(mean_p, freq, rows):
        ax.annotate(f"n={n}", (x, y), xytext=(6, -10), textcoords="offset points", fontsize=7, color=GREY)
    ax.set(
        xlim=(0, 1),
        ylim=(-0.02, 1.02),
        ylabel="observed frequency (fraction of rows)",
        title=f"Reliability: {what}\nexpected calibration error {ece:.3f}",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    hist.bar(edges[:-1], counts, width=1 / bins, align="edge", color=ACCENT, alpha=0.5, edgecolor="white")
    hist.set(xlabel="predicted probability", ylabel="rows")
    return fig, ece, merged


def reliability_before_after(
    idx: np.ndarray, before: np.ndarray, after: np.ndarray, method: str, bins: int = ECE_BINS
) -> tuple[Figure, float, float]:
    """Reliability diagram of the top class's probability, before (``before``: probabilities of the network's own
    logits) and after calibration (``after``), over ``bins`` equal-width bins (empty bins left out), with the
    histogram of each beneath. ``idx``: true class indices. Returns the figure and the two expected calibration
    errors (the ``ece`` metric)."""
    fig = Figure(figsize=(5.6, 5.6), layout="constrained")
    ax, hist = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    ax.plot([0, 1], [0, 1], color=GREY, linestyle="--", linewidth=1, label="perfectly calibrated")
    edges = np.linspace(0, 1, bins + 1)
    eces = []
    for proba, name, colour in ((before, "before", SECOND), (after, f"after ({method})", ACCENT)):
        conf = proba.max(axis=1)
        right = (proba.argmax(axis=1) == idx).astype(float)
        which = np.clip(np.ceil(conf * bins).astype(int) - 1, 0, bins - 1)  # as expected_calibration_error bins
        rows = np.bincount(which, minlength=bins)
        used = rows > 0
        mean_conf = np.bincount(which, conf, minlength=bins)[used] / rows[used]
        acc = np.bincount(which, right, minlength=bins)[used] / rows[used]
        ece = expected_calibration_error(idx, proba, bins)
        eces.append(ece)
        ax.plot(mean_conf, acc, marker="o", ms=4, color=colour, label=f"{name}: ECE {ece:.3f}")
        hist.hist(conf, bins=edges, color=colour, alpha=0.45, label=name)
    ax.set(
        xlim=(0, 1),
        ylim=(-0.02, 1.02),
        ylabel="accuracy of the top class (fraction)",
        title=f"Reliability before and after calibration\n{bins} equal-width bins of the top-class probability",
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    hist.set(xlabel="probability of the predicted class", ylabel="rows")
    hist.legend(fontsize=7)
    return fig, eces[0], eces[1]


def roc_pr(
    fpr: np.ndarray,
    tpr: np.ndarray,
    auc: float,
    recall: np.ndarray,
    precision: np.ndarray,
    ap: float,
    prevalence: float,
    positive: str,
) -> Figure:
    """ROC and precision-recall curves of the positive class, with the chance levels."""
    fig = Figure(figsize=(10, 4.4), layout="constrained")
    ax_roc, ax_pr = fig.subplots(1, 2)
    ax_roc.plot(fpr, tpr, color=ACCENT, label=f"model (AUC {auc:.3f})")
    ax_roc.plot([0, 1], [0, 1], color=GREY, linestyle="--", linewidth=1, label="chance (AUC 0.5)")
    ax_roc.set(
        title=f"ROC curve, positive class '{positive}'",
        xlabel="false positive rate (fraction)",
        ylabel="true positive rate (recall, fraction)",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    ax_pr.step(recall, precision, where="post", color=SECOND, label=f"model (AP {ap:.3f})")
    ax_pr.axhline(prevalence, color=GREY, linestyle="--", linewidth=1, label=f"chance ({prevalence:.2f})")
    ax_pr.set(
        title=f"Precision-recall curve, positive class '{positive}'",
        xlabel="recall (fraction)",
        ylabel="precision (fraction)",
        xlim=(0, 1),
        ylim=(0, 1.02),
    )
    for ax in (ax_roc, ax_pr):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right" if ax is ax_roc else "lower left")
    return fig


def residuals(true: np.ndarray, pred: np.ndarray, target: str) -> Figure:
    """Predicted against true (the diagonal is perfect), residuals against predicted, and the residual histogram."""
    resid = true - pred
    fig = Figure(figsize=(13, 4.2), layout="constrained")
    ax_pt, ax_res, ax_hist = fig.subplots(1, 3)
    lo, hi = float(min(true.min(), pred.min())), float(max(true.max(), pred.max()))
    ax_pt.scatter(true, pred, s=12, alpha=0.6, color=ACCENT)
    ax_pt.plot([lo, hi], [lo, hi], color=GREY, linestyle="--", linewidth=1, label="perfect (predicted = true)")
    ax_pt.set(
        title="Predicted vs true", xlabel=f"true {target} (label units)", ylabel=f"predicted {target} (label units)"
    )
    ax_pt.legend(fontsize=8)
    ax_res.scatter(pred, resid, s=12, alpha=0.6, color=SECOND)
    ax_res.axhline(0, color=GREY, linestyle="--", linewidth=1)
    ax_res.set(
        title="Residuals vs predicted",
        xlabel=f"predicted {target} (label units)",
        ylabel="residual = true − predicted (label units)",
    )
    ax_hist.hist(resid, bins=min(30, max(5, len(resid) // 5)), color=SECOND, alpha=0.7, edgecolor="white")
    ax_hist.axvline(0, color=GREY, linestyle="--", linewidth=1)
    ax_hist.set(title="Residual distribution", xlabel="residual (label units)", ylabel="rows")
    for ax in (ax_pt, ax_res, ax_hist):
        ax.grid(alpha=0.3)
    return fig
