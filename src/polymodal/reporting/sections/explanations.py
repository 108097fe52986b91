"""Why the model predicts what it does: modality importance with bootstrap confidence intervals, and a gallery of
explained test rows (some right, some wrong), both from :mod:`polymodal.explain`."""

from __future__ import annotations

import numpy as np

from ...ensemble import is_ensemble
from ...registry import register
from .. import plots
from ..blocks import Figure, Gallery, Note, Section, Table
from ..context import ReportContext, Scored, fmt
from . import MULTILABEL, PREDICTIVE, SECTIONS, ReportSection

GALLERY_DPI = 80


@register(SECTIONS, "importance")
class Importance(ReportSection):
    title = "Modality importance"
    order = 100
    problem_types = PREDICTIVE | MULTILABEL

    def build(self, ctx: ReportContext) -> Section:
        sec = self.section()
        o = ctx.options
        if o.n_bootstrap == 0:
            sec.blocks.append(Note("Left out (bootstrap resamples set to 0)."))
            return sec
        from ...explain import modality_importance, plot_importance

        ctx.progress(f"modality importance ({', '.join(o.importance_methods)}; {o.n_bootstrap} bootstrap resamples)")
        result = modality_importance(
            ctx.pipeline,
            ctx.scored.frame,
            methods=o.importance_methods,
            n_bootstrap=o.n_bootstrap,
            seed=o.seed,
            data_root=ctx.scored.root,
        )
        level = getattr(result, "confidence", 0.95)  # the interface's default; newer results carry their own
        sec.intro = (
            f"How much worse the test {result.metric} gets (intact: {fmt(result.baseline)} on "
            f"{result.n_rows} rows) when one input column is taken away: 'drop' empties it (the model sees "
            "it as missing), 'permutation' shuffles it across rows (present but uninformative). Higher = "
            f"the model relies on it more. Intervals: {level:.0%} bootstrap over {result.n_bootstrap} "
            "resamples of the rows; an interval that includes 0 means no measurable effect."
        )
        sec.blocks.append(
            Figure(
                "modality importance",
                plots.to_png(plot_importance(result)),
                "importance of each input column with confidence intervals",
            )
        )
        rows = sorted(result.rows, key=lambda r: (r.method, -r.importance))  # most important first per method
        sec.blocks.append(
            Table(
                ["column", "method", "importance", "CI low", "CI high"],
                [[r.modality, r.method, fmt(r.importance), fmt(r.ci_low), fmt(r.ci_high)] for r in rows],
                numeric=[False, False, True, True, True],
            )
        )
        return sec


def _choose(scored: Scored, n: int, seed: int) -> list[tuple[str, list[int]]]:
    """Row positions for the gallery: (group title, positions). Classification: the most confident mistakes and a
    random sample of right predictions; regression: the largest and the smallest errors."""
    n_bad = n // 2
    correct = scored.correct()
    if correct is not None and scored.proba is not None:  # (the same: classification)
        confidence = scored.proba.max(axis=1)
        wrong = [int(i) for i in np.argsort(-confidence, kind="stable") if not correct[i]]
        right = [int(i) for i in np.random.default_rng(seed).permutation(len(correct)) if correct[i]]
        n_bad = min(n_bad, len(wrong))
        n_good = min(n - n_bad, len(right))
        n_bad = min(n - n_good, len(wrong))  # too few right predictions: show more mistakes
        return [
            ("Right predictions", sorted(right[:n_good])),
            ("Wrong predictions (most confident first)", wrong[:n_bad]),
        ]
    err = np.abs(scored.y_true.to_numpy(dtype=float) - np.asarray(scored.predictions, dtype=float))
    order = [int(i) for i in np.argsort(err, kind="stable")]
    n_bad = min(n_bad, len(order))
    return [("Closest predictions", order[: n - n_bad]), ("Largest errors", order[::-1][:n_bad])]


def _value(v: object) -> str:
    """A label or a regression value: numbers to 4 significant digits, anything else as it is."""
    return f"{v:.4g}" if isinstance(v, (float, np.floating)) else str(v)


def _caption(e) -> str:
    pred = f"predicted {_value(e.prediction)}"
    if e.probability is not None:
        pred += f" (p = {e.probability:.2f})"
    if e.target is not None:
        pred += f", true {_value(e.target)}"
    shares = ", ".join(f"{a.column} {a.share:.0%}" for a in sorted(e.attributions.values(), key=lambda a: -a.share))
    text = f"Row {e.index}: {pred}. Share of attribution: {shares}."
    if e.fusion_weights:
        text += " Fusion weights: " + ", ".join(f"{k} {v:.2f}" for k, v in e.fusion_weights.items()) + "."
    return text


@register(SECTIONS, "gallery")
class ExplainedExamples(ReportSection):
    title = "Explained examples"
    order = 110
    problem_types = PREDICTIVE

    def build(self, ctx: ReportContext) -> Section:
        o = ctx.options
        sec = self.section(
            f"Test rows with what drove their prediction ({o.explain_method.replace('_', ' ')}): "
            "image heat-maps, highlighted text tokens, audio spectrogram saliency, time-series channel x time maps "
            "and tabular bars. "
            "The shares say how much of the attribution each column holds."
        )
        if o.n_examples == 0:
            sec.blocks.append(Note("Left out (examples set to 0)."))
            return sec
        from ...explain import explain, plot_explanation

        method = o.explain_method
        if method == "integrated_gradients" and is_ensemble(ctx.pipeline.model):
            method = "occlusion"  # gradients through one network only: an ensemble is explained by occlusion
            sec.blocks.append(Note("This model is an ensemble: its examples are explained by occlusion."))
        groups = [(title, pos) for title, pos in _choose(ctx.scored, o.n_examples, o.seed) if pos]
        positions = [p for _, pos in groups for p in pos]
        ctx.progress(f"explaining {len(positions)} examples ({method})")
        rows = ctx.scored.frame.iloc[positions]
        found = explain(ctx.pipeline, rows, method=method, data_root=ctx.scored.root)
        by_index = {e.index: e for e in found}
        for title, pos in groups:
            figures = []
            for label in ctx.scored.frame.index[pos]:
                e = by_index.get(label)
                if e is None:  # a row explain could not use (e.g. an unreadable file) is left out, not faked
                    continue
                # Lower resolution for these large multi-panel figures: sharp at the page width, fewer bytes.
                figures.append(
                    Figure(
                        f"row {label}",
                        plots.to_png(plot_explanation(e), dpi=GALLERY_DPI),
                        f"attributions for test row {label}",
                        _caption(e),
                    )
                )
            if figures:
                sec.blocks.append(Gallery(f"{title} ({len(figures)})", figures))
        if not any(b.type == "gallery" for b in sec.blocks):
            sec.blocks.append(Note("No test row could be explained."))
        return sec
