"""How well the model does on the test table: metrics, confusion matrix, per-class scores, calibration, ROC/PR
(binary), residuals (regression), sample outputs (generation), per-tag scores (multi-label)."""

from __future__ import annotations

import numpy as np
from sklearn import metrics as skm

from ...metrics.classification import label_key
from ...metrics.multilabel import average_precision, predicted
from ...registry import register
from ...tasks.classification import ClassificationTask
from ...tasks.multilabel import MultilabelTask
from .. import plots
from ..blocks import Figure, Metric, Metrics, Note, Section, Table
from ..context import ReportContext, fmt
from . import CLASSIFICATION, MULTILABEL, SECTIONS, ReportSection

# One line under each headline number; metrics not listed here are shown without one.
METRIC_HELP = {
    "accuracy": "share of rows predicted right",
    "balanced_accuracy": "mean recall over classes",
    "f1_macro": "F1 averaged over classes",
    "precision_macro": "precision averaged over classes",
    "recall_macro": "recall averaged over classes",
    "log_loss": "cross-entropy, lower is better",
    "roc_auc": "area under the ROC curve",
    "pr_auc": "average precision (macro one-vs-rest for 3+ classes)",
    "ece": "expected calibration error, lower is better",
    "rmse": "root mean squared error, label units",
    "mae": "mean absolute error, label units",
    "r2": "share of variance explained",
    "rows": "usable labelled test rows",
    "exact_match": "share of outputs equal to the reference",
    "f1_micro": "F1 of every (row, tag) decision pooled",
    "mAP": "mean average precision over tags, threshold-free",
    "subset_accuracy": "share of rows whose tag set is exactly right",
    "hamming_loss": "share of wrong (row, tag) decisions, lower is better",
    "precision_micro": "share of predicted tags that are right",
    "recall_micro": "share of true tags found",
}


@register(SECTIONS, "metrics")
class TestMetrics(ReportSection):
    title = "Test metrics"
    order = 40

    def build(self, ctx: ReportContext) -> Section:
        m = ctx.scored.metrics
        sec = self.section(f"Scores on {int(m['rows'])} held-out rows of {ctx.scored.source}.")
        sec.blocks.append(
            Metrics([Metric(k, f"{int(v)}" if k == "rows" else fmt(v), METRIC_HELP.get(k, "")) for k, v in m.items()])
        )
        return sec


def _keys(ctx: ReportContext) -> tuple[list[str], list[str], np.ndarray, np.ndarray]:
    """Class names, the labels used in the matrix (classes, then labels unseen in training), true and predicted keys."""
    assert ctx.summary.classes is not None, "class sections are built for classification only"
    classes = [label_key(c) for c in ctx.summary.classes]
    true = np.array([label_key(v) for v in ctx.scored.y_true], dtype=object)
    pred = np.array([label_key(v) for v in ctx.scored.predictions], dtype=object)
    unseen = sorted(set(true) - set(classes))
    return classes, classes + unseen, true, pred


@register(SECTIONS, "confusion")
class Confusion(ReportSection):
    title = "Confusion matrix"
    order = 50
    problem_types = CLASSIFICATION
    per_target = True

    def build(self, ctx: ReportContext) -> Section:
        classes, labels, true, pred = _keys(ctx)
        sec = self.section(
            "Rows are the true classes, columns the predicted ones; each cell shows the count and its "
            "share of the true class. The diagonal holds the right predictions."
        )
        matrix = skm.confusion_matrix(true, pred, labels=labels)
        fig = plots.confusion_matrix(matrix, labels, ctx.summary.label)
        sec.blocks.append(
            Figure(
                "confusion matrix",
                plots.to_png(fig),
                f"confusion matrix of {len(true)} rows over {len(labels)} classes",
            )
        )
        if len(labels) > len(classes):
            sec.blocks.append(
                Note(
                    f"Labels not seen in training ({', '.join(labels[len(classes) :])}) can only be "
                    "predicted wrong; they have rows but no column of their own."
                )
            )
        return sec


@register(SECTIONS, "per_class")
class PerClass(ReportSection):
    title = "Per-class precision, recall and F1"
    order = 60
    problem_types = CLASSIFICATION
    per_target = True

    def build(self, ctx: ReportContext) -> Section:
        classes, _, true, pred = _keys(ctx)
        p, r, f, support = skm.precision_recall_fscore_support(true, pred, labels=classes, zero_division=0)
        predicted = [int((pred == c).sum()) for c in classes]
        rows = [
            [c, fmt(p[i]), fmt(r[i]), fmt(f[i]), fmt(int(support[i])), fmt(predicted[i])] for i, c in enumerate(classes)
        ]
        rows.append(
            ["macro average", fmt(p.mean()), fmt(r.mean()), fmt(f.mean()), fmt(int(support.sum())), fmt(sum(predicted))]
        )
        sec = self.section(
            "Precision: of the rows predicted as the class, the share that are. Recall: of the rows "
            "of the class, the share found. F1: their harmonic mean. Support: test rows of the class."
        )
        sec.blocks.append(
            Table(["class", "precision", "recall", "F1", "support", "predicted"], rows, numeric=[False] + [True] * 5)
        )
        return sec


@register(SECTIONS, "calibration")
class Calibration(ReportSection):
    title = "Calibration"
    order = 70
    problem_types = CLASSIFICATION
    per_target = True

    def build(self, ctx: ReportContext) -> Section:
        proba = ctx.scored.proba
        assert proba is not None, "calibration is built for classification only"
        classes, _, true, _ = _keys(ctx)
        if len(classes) == 2:
            # Binary: the positive class's probability against how often the row really is positive.
            conf, observed = proba[:, 1], true == classes[1]
            what = f"P({ctx.summary.label} = {classes[1]})"
        else:
            # Multiclass: the top-label confidence against how often the top label is right.
            conf, observed = proba.max(axis=1), np.asarray(ctx.scored.correct())
            what = "confidence of the predicted class"  # "observed" = the top-1 prediction is right
        fig, ece, bins = plots.reliability(conf, observed, what)
        sec = self.section(
            "When the model says 80 %, is it right 80 % of the time? Dots on the dashed diagonal mean "
            "yes; dots below it mean over-confidence. The expected calibration error (ECE) is the "
            f"row-weighted mean gap between the two. Each bin holds at least {plots.MIN_BIN_ROWS} rows "
            "(sparse neighbouring bins are merged); a dot's size and label give its rows."
        )
        sec.blocks.append(
            Figure("reliability diagram", plots.to_png(fig), f"reliability diagram of the {what}, ECE {ece:.3f}")
        )
        sec.blocks.append(
            Table(
                ["predicted probability", "rows", "mean predicted", "observed"],
                [[f"{b.low:.1f}–{b.high:.1f}", fmt(b.rows), fmt(b.mean_predicted), fmt(b.observed)] for b in bins],
                numeric=[False, True, True, True],
            )
        )
        self._before_after(ctx, sec)
        return sec

    @staticmethod
    def _before_after(ctx: ReportContext, sec: Section) -> None:
        """What the calibration learned on validation did to the test table's probabilities (the diagram above shows
        them after it)."""
        task = ctx.pipeline.task
        learned = task.calibration_summary() or {}
        calibration = learned.get("calibration")
        if not isinstance(task, ClassificationTask) or not calibration or calibration["method"] == "none":
            sec.blocks.append(Note("No calibration was fitted: the probabilities are the network's own."))
            return
        idx = task.encode_target(ctx.scored.y_true)
        seen = idx >= 0
        outputs = np.asarray(ctx.scored.outputs)[seen]
        before, after = task.predict_proba(outputs, calibrated=False), task.predict_proba(outputs)
        fig, ece_before, ece_after = plots.reliability_before_after(idx[seen], before, after, calibration["method"])
        sec.blocks.append(
            Figure(
                "reliability before and after calibration",
                plots.to_png(fig),
                f"reliability before and after {calibration['method']} calibration, test ECE {ece_before:.3f} → "
                f"{ece_after:.3f}",
            )
        )
        labels = list(range(len(task.classes)))
        loss = [skm.log_loss(idx[seen], np.clip(p, 1e-15, 1), labels=labels) for p in (before, after)]
        params = (
            f"temperature {calibration['temperature']:.4f}"
            if "temperature" in calibration
            else "a scale and a bias per class"
        )
        rows = [
            ["ECE, test", fmt(ece_before), fmt(ece_after)],
            ["log-loss, test", fmt(loss[0]), fmt(loss[1])],
            ["ECE, validation", fmt(calibration["val_ece_before"]), fmt(calibration["val_ece_after"])],
            ["log-loss, validation", fmt(calibration["val_log_loss_before"]), fmt(calibration["val_log_loss_after"])],
        ]
        sec.blocks.append(
            Note(
                f"Calibration: {calibration['method']} scaling ({params}), fitted on {calibration['rows']} validation "
                "rows after training. The metrics above use the calibrated probabilities."
            )
        )
        sec.blocks.append(Table(["", "before", "after"], rows, numeric=[False, True, True]))
        threshold = learned.get("threshold")
        if threshold:
            measure = "F1 of the positive class" if threshold["rule"] == "f1" else "mean cost per row"
            sec.blocks.append(
                Note(
                    f"Decision threshold: P({task.classes[1]}) ≥ {threshold['value']:.4f}, chosen on validation "
                    f"({threshold['rule']}); validation {measure} {threshold['val_argmax']:.4f} with argmax, "
                    f"{threshold['val_tuned']:.4f} with the threshold."
                )
            )


@register(SECTIONS, "roc_pr")
class RocPr(ReportSection):
    title = "ROC and precision-recall curves"
    order = 80
    problem_types = frozenset({"binary"})
    per_target = True

    def build(self, ctx: ReportContext) -> Section:
        classes, _, true, _ = _keys(ctx)
        sec = self.section(f"How well P({classes[1]}) separates the two classes, over every decision threshold.")
        y = true == classes[1]
        if y.all() or not y.any():
            sec.blocks.append(Note("The test rows hold only one of the two classes, so these curves are undefined."))
            return sec
        assert ctx.scored.proba is not None, "ROC curves are built for binary classification only"
        score = ctx.scored.proba[:, 1]
        fpr, tpr, _ = skm.roc_curve(y, score)
        precision, recall, _ = skm.precision_recall_curve(y, score)
        fig = plots.roc_pr(
            fpr,
            tpr,
            skm.auc(fpr, tpr),
            recall,
            precision,
            skm.average_precision_score(y, score),
            float(y.mean()),
            classes[1],
        )
        sec.blocks.append(Figure("ROC and PR curves", plots.to_png(fig), "ROC and precision-recall curves"))
        return sec


@register(SECTIONS, "residuals")
class Residuals(ReportSection):
    title = "Residuals"
    order = 50
    problem_types = frozenset({"regression"})
    per_target = True

    def build(self, ctx: ReportContext) -> Section:
        true = ctx.scored.y_true.to_numpy(dtype=float)
        pred = np.asarray(ctx.scored.predictions, dtype=float)
        sec = self.section(
            "Points on the diagonal are exact predictions; residuals should scatter evenly around 0 "
            "with no trend against the predicted value."
        )
        fig = plots.residuals(true, pred, ctx.summary.label)
        sec.blocks.append(Figure("residual plots", plots.to_png(fig), "predicted against true values and residuals"))
        return sec


@register(SECTIONS, "generated")
class Generated(ReportSection):
    title = "Sample outputs"
    order = 50
    problem_types = frozenset({"generation"})

    def build(self, ctx: ReportContext) -> Section:
        n = max(ctx.options.n_examples, 1) * 2
        sec = self.section(f"The first {n} test rows: the reference text and the generated one.")
        rows = [
            [str(i), str(t), str(p), "yes" if str(t).strip() == str(p).strip() else "no"]
            for i, t, p in list(zip(ctx.scored.frame.index, ctx.scored.y_true, ctx.scored.predictions))[:n]
        ]
        sec.blocks.append(Table(["row", "reference", "generated", "exact"], rows))
        return sec


@register(SECTIONS, "per_tag")
class PerTag(ReportSection):
    title = "Per-tag scores"
    order = 60
    problem_types = MULTILABEL

    def build(self, ctx: ReportContext) -> Section:
        task = ctx.pipeline.task
        assert isinstance(task, MultilabelTask), "the per-tag section is built for multi-label models only"
        true = task.indicators(ctx.scored.y_true.reset_index(drop=True), warn=False)
        known = ~np.isnan(true).any(axis=1)
        true, proba = true[known] > 0.5, task.predict_proba(ctx.scored.outputs)[known]
        pred = predicted(proba, np.asarray(task.thresholds))
        rows = []
        for k, tag in enumerate(task.tags):
            t, p = true[:, k], pred[:, k]
            tp = int((t & p).sum())
            rows.append(
                [
                    tag,
                    fmt(task.thresholds[k]),
                    fmt(tp / p.sum() if p.any() else float("nan")),
                    fmt(tp / t.sum() if t.any() else float("nan")),
                    fmt(2 * tp / (t.sum() + p.sum()) if t.any() or p.any() else float("nan")),
                    fmt(average_precision(t, proba[:, k])),
                    fmt(int(t.sum())),
                    fmt(int(p.sum())),
                ]
            )
        sec = self.section(
            "Each tag is decided on its own: predicted when its probability reaches its threshold, tuned on the "
            "validation split for the tag's F1 (0.5 when validation had no row with the tag). AP: average "
            "precision, the threshold-free score; support: test rows with the tag; '—': undefined (no such row)."
        )
        sec.blocks.append(
            Table(
                ["tag", "threshold", "precision", "recall", "F1", "AP", "support", "predicted"],
                rows,
                numeric=[False] + [True] * 7,
            )
        )
        return sec
