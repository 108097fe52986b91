"""Matplotlib figures of explanations and modality importance, readable at a glance.

Attribution colours are diverging everywhere: red supports the prediction (taking that part away lowers the
explained number), blue speaks against it, white is neutral; each panel's colour bar gives the scale.
"""

from __future__ import annotations

import math
import textwrap
from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib import colormaps
from matplotlib.cm import ScalarMappable
from matplotlib.colors import Normalize

from .. import plotting

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from .attributions import Explanation, ModalityAttribution
    from .importance import ImportanceResult

CMAP = "RdBu_r"
METHOD_NAMES = {"occlusion": "occlusion", "integrated_gradients": "integrated gradients"}


def figure_png(fig: "Figure", dpi: int = 110) -> bytes:
    """The figure as PNG bytes. Figures are drawn without pyplot (see polymodal.plotting): nothing to close."""
    return plotting.png_bytes(fig, dpi=dpi, bbox_inches="tight")


def _limit(values: np.ndarray) -> float:
    m = float(np.abs(values).max()) if values.size else 0.0
    return m if m > 0 else 1e-6


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return "—" if math.isnan(v) else f"{v:.3g}"
    return "—" if v is None else str(v)


# ---------------------------------------------------------------------------------------------- importance
def plot_importance(result: "ImportanceResult") -> "Figure":
    """Horizontal bars, one panel per method: each column's importance with its bootstrap interval."""
    frame = result.to_frame()
    methods = list(dict.fromkeys(frame["method"]))
    n_cols = max(1, frame["modality"].nunique())
    fig, axes = plotting.subplots(
        1, max(1, len(methods)), figsize=(5.2 * max(1, len(methods)), 1.2 + 0.5 * n_cols), squeeze=False, sharey=False
    )
    loss = "increase" if not result.higher_is_better else "drop"
    for ax, method in zip(axes[0], methods):
        part = frame[frame["method"] == method].iloc[::-1]  # most important on top
        y = np.arange(len(part))
        imp = part["importance"].to_numpy(dtype=float)
        lo, hi = part["ci_low"].to_numpy(dtype=float), part["ci_high"].to_numpy(dtype=float)
        err = None if np.isnan(lo).all() else np.vstack([np.maximum(imp - lo, 0), np.maximum(hi - imp, 0)])
        # Red: a measurable loss (the interval above 0); grey: no measurable effect.
        sure = imp > 0 if np.isnan(lo).all() else lo > 0
        colours = ["#c0392b" if s else "#95a5a6" for s in sure]
        ax.barh(y, imp, xerr=err, color=colours, alpha=0.85, capsize=4, error_kw={"elinewidth": 1.2})
        ax.axvline(0, color="black", linewidth=0.8)
        ax.set_yticks(y, [f"{m} ({k})" if k else m for m, k in zip(part["modality"], part["kind"])])
        ax.set_xlabel(f"{loss} in {result.metric} without the column")
        what = (
            "column made missing"
            if method == "drop"
            else (f"column shuffled across rows{f', {result.repeats}×' if result.repeats > 1 else ''}")
        )
        ax.set_title(f"{method}: {what}", fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    fig.suptitle(
        f"Modality importance — {result.metric} {result.baseline:.3f} on {result.n_rows} intact rows; "
        f"{result.confidence:.0%} bootstrap CI ({result.n_bootstrap} resamples)",
        fontsize=11,
    )
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------- explanation
def _colorbar(fig: "Figure", mappable: Any, ax: "Axes", label: str) -> None:
    cb = fig.colorbar(mappable, ax=ax, fraction=0.046, pad=0.04)
    cb.set_label(label, fontsize=8)
    cb.ax.tick_params(labelsize=7)


def _image_panel(fig: "Figure", ax: "Axes", a: "ModalityAttribution", unit: str) -> None:
    if a.background is not None:
        # The pixels in grey under the heat map: the shapes stay visible and the colours are the attribution's.
        grey = a.background @ np.array([0.299, 0.587, 0.114])
        ax.imshow(grey, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    lim = _limit(a.scores)
    im = ax.imshow(
        a.scores,
        cmap=CMAP,
        vmin=-lim,
        vmax=lim,
        alpha=0.6 if a.background is not None else 1.0,
        interpolation="nearest",
    )
    h, w = a.scores.shape
    ax.set_xlabel(f"x (pixels of the {w}×{h} processed image)", fontsize=8)
    ax.set_ylabel("y (pixels)", fontsize=8)
    _colorbar(fig, im, ax, unit)


def _video_panel(fig: "Figure", ax: "Axes", a: "ModalityAttribution", unit: str) -> None:
    """The sampled frames side by side over one bar per frame: which moments of the clip the prediction rests on."""
    n = len(a.scores)
    ax.axis("off")
    strip, bars = ax.inset_axes((0.0, 0.5, 1.0, 0.45)), ax.inset_axes((0.0, 0.08, 1.0, 0.38))
    if a.background is not None and len(a.background) == n:
        strip.imshow(np.concatenate(list(a.background), axis=1), interpolation="nearest", aspect="auto")
    strip.set_xticks([])
    strip.set_yticks([])
    lim = _limit(a.scores)
    colours = colormaps[CMAP](Normalize(-lim, lim)(a.scores))
    bars.bar(np.arange(n), a.scores, color=colours, width=0.9)
    bars.axhline(0, color="black", linewidth=0.6)
    bars.set_xlim(-0.5, n - 0.5)
    bars.set_xticks(range(n), [str(i + 1) for i in range(n)], fontsize=7)
    bars.set_xlabel("sampled frame", fontsize=8)
    bars.set_ylabel(unit, fontsize=6)


def _audio_panel(fig: "Figure", ax: "Axes", a: "ModalityAttribution", unit: str) -> None:
    f, t = a.scores.shape
    if a.background is not None:
        ax.imshow(a.background, origin="lower", aspect="auto", cmap="gray_r", interpolation="nearest")
    lim = _limit(a.scores)
    im = ax.imshow(
        a.scores,
        origin="lower",
        aspect="auto",
        cmap=CMAP,
        vmin=-lim,
        vmax=lim,
        alpha=0.6 if a.background is not None else 1.0,
        interpolation="nearest",
    )
    ax.set_xlabel(f"time frame (of {t}; log-mel spectrogram, dark = loud)", fontsize=8)
    ax.set_ylabel(f"mel band (of {f})", fontsize=8)
    _colorbar(fig, im, ax, unit)


def _series_panel(fig: "Figure", ax: "Axes", a: "ModalityAttribution", unit: str) -> None:
    """Channel x time attributions as a heat map, each channel's series drawn across its own row."""
    c, t = a.scores.shape
    lim = _limit(a.scores)
    im = ax.imshow(
        a.scores,
        origin="lower",
        aspect="auto",
        cmap=CMAP,
        vmin=-lim,
        vmax=lim,
        interpolation="nearest",
        extent=(-0.5, t - 0.5, -0.5, c - 0.5),
    )
    if a.background is not None:
        for ch, line in enumerate(np.asarray(a.background, dtype=float)):
            finite = line[np.isfinite(line)]
            if finite.size:
                lo, hi = float(finite.min()), float(finite.max())
                ax.plot(np.arange(t), ch - 0.4 + 0.8 * (line - lo) / max(hi - lo, 1e-9), color="black", lw=0.8)
    ax.set_xlabel(f"time step (of {t}, after cropping/padding)", fontsize=8)
    ax.set_yticks(range(c))
    ax.set_ylabel(f"channel (of {c})", fontsize=8)
    _colorbar(fig, im, ax, unit)


def _text_panel(fig: "Figure", ax: "Axes", a: "ModalityAttribution", unit: str) -> None:
    """The text panel's frame: no axis, and the colour bar laid horizontally under it (in its own axes, so the
    tokens, placed later by :func:`_place_tokens` within this axes, never reach it)."""
    ax.set_axis_off()
    lim = _limit(np.asarray(a.scores, dtype=float))
    sm = ScalarMappable(cmap=CMAP, norm=Normalize(-lim, lim))
    cb = fig.colorbar(sm, ax=ax, orientation="horizontal", fraction=0.07, pad=0.04, aspect=30)
    cb.set_label(unit.replace("\n", " "), fontsize=8)
    cb.ax.tick_params(labelsize=7)


TOKEN_FONT = 11
TOKEN_PAD = 0.25  # the token box's padding, in font sizes


def _place_tokens(fig: "Figure", ax: "Axes", a: "ModalityAttribution") -> None:
    """Lay the highlighted tokens out inside ``ax`` once the figure's layout is final: each token is measured and
    goes on the next line when it would cross the panel's right edge; tokens that do not fit above the panel's
    bottom are summarised in one line ("… and N more tokens")."""
    tokens = a.tokens or []
    scores = np.asarray(a.scores, dtype=float)
    lim = _limit(scores)
    cmap = colormaps[CMAP]
    renderer = fig.canvas.get_renderer()  # type: ignore[attr-defined]
    box = ax.get_window_extent(renderer)
    pad = TOKEN_PAD * TOKEN_FONT * fig.dpi / 72  # box padding in pixels
    gap, line_h = 2.5 * pad, TOKEN_FONT * 2.1 * fig.dpi / 72
    left, right = box.x0 + pad, box.x1 - pad
    x, y = left, box.y1 - line_h / 2
    bottom = box.y0 + 1.6 * line_h  # room for the summary line
    inverse = ax.transAxes.inverted()

    def to_axes(px: float, py: float) -> tuple[float, float]:
        ax_x, ax_y = inverse.transform((px, py))
        return float(ax_x), float(ax_y)

    shown = 0
    for tok, s in zip(tokens, scores):
        style: dict[str, Any] = {
            "fontsize": TOKEN_FONT,
            "va": "center",
            "ha": "left",
            "color": "white" if abs(s) > 0.6 * lim else "black",
            "bbox": {"boxstyle": f"round,pad={TOKEN_PAD}", "facecolor": cmap(0.5 + 0.5 * s / lim), "edgecolor": "none"},
        }
        t = ax.text(*to_axes(x, y), tok, transform=ax.transAxes, **style)
        width = t.get_window_extent(renderer).width
        if x > left and x + width + pad > right:  # wrap
            x, y = left, y - line_h
            t.set_position(to_axes(x, y))
        if y < bottom:
            t.remove()
            break
        x += width + gap
        shown += 1
    if tokens:
        top = int(np.argmax(scores))
        more = f"… and {len(tokens) - shown} more tokens; " if shown < len(tokens) else ""
        ax.text(
            *to_axes(left, y - line_h),
            f"{more}top token: '{textwrap.shorten(tokens[top], 24, placeholder='…')}' ({scores[top]:+.3g})",
            transform=ax.transAxes,
            fontsize=8,
            va="center",
            color="#333333",
        )


def _tabular_panel(fig: "Figure", ax: "Axes", cols: list["ModalityAttribution"], unit: str) -> None:
    names = [f"{a.column} = {_fmt(a.value)}" for a in cols][::-1]
    vals = np.array([a.total for a in cols][::-1], dtype=float)
    colours = ["#c0392b" if v > 0 else "#2e86c1" for v in vals]
    ax.barh(np.arange(len(vals)), vals, color=colours)
    ax.set_yticks(np.arange(len(vals)), names, fontsize=8)
    ax.axvline(0, color="black", linewidth=0.8)
    ax.set_xlabel(unit, fontsize=8)
    ax.grid(axis="x", alpha=0.3)


def _shares_panel(ax: "Axes", e: "Explanation") -> None:
    cols = list(e.attributions)
    shares = np.array([e.attributions[c].share for c in cols], dtype=float)
    y = np.arange(len(cols))[::-1]
    ax.barh(y, shares, color="#c0392b", alpha=0.85, label="attribution share")
    if e.fusion_weights:
        # The fusion weighs modalities; a tabular modality's weight is drawn next to each of its columns' bars.
        mods = {
            c: c if c in e.fusion_weights else next((m for m in e.fusion_weights if m not in e.attributions), None)
            for c in cols
        }
        w = np.array([e.fusion_weights.get(mods[c] or "", np.nan) if mods[c] else np.nan for c in cols], dtype=float)
        ax.scatter(w, y, marker="D", color="black", zorder=3, label="fusion weight (modality)")
        ax.legend(fontsize=7, loc="lower right")
    labels = [f"{c}{'' if e.attributions[c].present else ' (empty)'}" for c in cols]
    ax.set_yticks(y, labels, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of the row's |attribution|", fontsize=8)
    ax.set_title("columns", fontsize=10)
    ax.grid(axis="x", alpha=0.3)


def plot_explanation(explanation: "Explanation") -> "Figure":
    """One panel per modality present in the row (image overlay, spectrogram saliency, frame strip with one bar per
    frame, highlighted tokens, tabular
    bars) after a panel of each column's share; titled with the prediction, the true label and the method. A column
    that is empty in the row gets no panel (the shares panel marks it "(empty)"); the text panel's colour bar lies
    under its tokens, which are wrapped to the panel's width once the layout is final (nothing overlaps)."""
    e = explanation
    unit = ("drop in " if e.method == "occlusion" else "IG attribution to ") + (e.explained or "the prediction")
    unit_short = "\n".join(textwrap.wrap(unit, 34))
    attrs = [a for a in e.attributions.values() if a.present]
    grids = [a for a in attrs if a.scores.ndim == 2]
    texts = [a for a in attrs if a.tokens is not None]
    tab = [a for a in attrs if a.scores.ndim == 0]
    panels: list[tuple[str, Any]] = [("shares", None)]
    panels += [(a.kind if a.kind in ("image", "audio", "timeseries") else "grid", a) for a in grids]
    panels += [("video", a) for a in attrs if a.kind == "video" and a.scores.ndim == 1 and a.scores.size]
    panels += [("text", a) for a in texts]
    if tab:
        panels.append(("tabular", tab))
    ncols = min(len(panels), 3)
    nrows = math.ceil(len(panels) / ncols)
    fig = plotting.new_figure(figsize=(5.0 * ncols, 3.9 * nrows))
    grid = fig.add_gridspec(nrows, ncols)
    token_axes: list[tuple[Axes, ModalityAttribution]] = []
    for i, (kind, a) in enumerate(panels):  # only as many axes as panels: no blank ones
        ax = fig.add_subplot(grid[i // ncols, i % ncols])
        if kind == "shares":
            _shares_panel(ax, e)
            continue
        if kind == "tabular":
            _tabular_panel(fig, ax, a, unit_short)
            ax.set_title("numbers and categories", fontsize=10)
            continue
        ax.set_title(f"{a.column} ({a.kind}), share {a.share:.0%}", fontsize=10)
        if kind == "text":
            _text_panel(fig, ax, a, unit_short)
            token_axes.append((ax, a))
        elif kind == "audio":
            _audio_panel(fig, ax, a, unit_short)
        elif kind == "timeseries":
            _series_panel(fig, ax, a, unit_short)
        elif kind == "video":
            _video_panel(fig, ax, a, unit_short)
        else:
            _image_panel(fig, ax, a, unit_short)
    pred = _fmt(e.prediction) + (f" (p = {e.probability:.2f})" if e.probability is not None else "")
    truth = (
        "" if e.target is None else f", true {_fmt(e.target)}" + (" ✓" if str(e.target) == str(e.prediction) else " ✗")
    )
    fig.suptitle(f"row {_fmt(e.index)}: predicted {pred}{truth} — {METHOD_NAMES.get(e.method, e.method)}", fontsize=12)
    fig.tight_layout()
    for ax, a in token_axes:  # after the layout: the tokens are measured against the panel's final size
        _place_tokens(fig, ax, a)
    return fig
